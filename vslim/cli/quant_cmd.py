"""``vslim compress ptq|qat|prune``; ``vslim-quant`` is ``ptq``: post-training INT8 quantization.

Takes flags, a vslim PTQ YAML, or PaddleVideo's quantization YAML unchanged
(``vslim-quant -c pptsm_k400_frames_uniform_quantization.yaml``); flags given on
the command line override the file.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import add_command_group, print_json, say

COMMANDS = {
    "ptq": "post-training quantization to INT8",
    "qat": "quantization-aware training to INT8",
    "prune": "structured filter pruning with fine-tuning",
}
DESCRIPTIONS = {
    "ptq": "Post-training INT8 quantization of an FP32 inference model with PaddleSlim, calibrated on a few "
    "clips; writes the INT8 model, its vslim.json (with the oneDNN INT8 op set that runs it correctly) and "
    "ptq_report.json/.md (accuracy, agreement with FP32, size, latency). Takes flags, a vslim PTQ YAML, "
    "or PaddleVideo's quantization YAML unchanged (vslim-quant -c "
    "pptsm_k400_frames_uniform_quantization.yaml); flags override the file. --algo auto tries several "
    "algorithms and keeps the most accurate one within --tolerance of FP32.",
    "qat": "Quantization-aware training from trained FP32 (possibly pruned) weights: fake-quant layers, a short "
    "fine-tune at a low learning rate, then a QDQ INT8 inference model that runs on oneDNN INT8 kernels, "
    "with qat_report.json/.md comparing FP32, PTQ (given --ptq-model) and QAT.",
    "prune": "Structured filter pruning of trained weights with PaddleSlim: one ratio for every prunable conv, or "
    "the ratios that remove a FLOPs fraction (optionally from a per-layer sensitivity analysis), then a "
    "fine-tune. Writes weights/, inference/ and prune_report.json/.md (FLOPs, parameters, size, latency, "
    "accuracy before and after).",
}


def _lists(p: argparse.ArgumentParser) -> None:
    p.add_argument("--train-list", required=True, help="PaddleVideo list to fine-tune on")
    p.add_argument(
        "--train-prefix",
        default="",
        help="folder the train list's paths are relative to (default: the list's own folder)",
    )
    p.add_argument("--val-list", required=True, help="labelled list for accuracy (and for the best epoch)")
    p.add_argument(
        "--val-prefix",
        default="",
        help="folder the validation list's paths are relative to (default: the list's own folder)",
    )


def _default(cls, name: str):
    return cls.__dataclass_fields__[name].default


def _default_list(cls, name: str) -> str:
    return ",".join(cls.__dataclass_fields__[name].default_factory())


def configure(command: str, p: argparse.ArgumentParser) -> None:
    from vslim.compress.config import PTQ_ALGOS, PruneConfig, PTQConfig, QATConfig

    if command == "qat":
        p.add_argument("--weights", required=True, help="trained FP32 .pdparams (vslim.json beside it)")
        p.add_argument("--arch", help="zoo architecture (default: from vslim.json)")
        _lists(p)
        p.add_argument("--out", required=True, help="INT8 inference model folder")
        p.add_argument("--epochs", type=int, help="default: 1/3 of the weights' training epochs, at least 2")
        p.add_argument("--lr", type=float, help="default: 1/10 of the training default (0.0003)")
        p.add_argument(
            "--warmup",
            type=float,
            default=_default(QATConfig, "warmup_epochs"),
            help="warm-up epochs (default: %(default)s)",
        )
        p.add_argument(
            "--batch-size",
            type=int,
            default=_default(QATConfig, "batch_size"),
            help="clips per training step (default: %(default)s)",
        )
        p.add_argument(
            "--layers",
            default=_default_list(QATConfig, "quantizable_layers"),
            help="layer types to quantize, comma-separated (default: %(default)s)",
        )
        p.add_argument("--ptq-model", help="a PTQ INT8 model folder to compare against in the report")
        p.add_argument("--resume", action="store_true", help="continue an interrupted run from its last epoch")
        p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
        p.set_defaults(handler=qat)
        return
    if command == "prune":
        p.add_argument("--weights", required=True, help="trained .pdparams (vslim.json beside it)")
        p.add_argument("--arch", help="zoo architecture (default: from vslim.json)")
        _lists(p)
        p.add_argument("--out", required=True, help="output folder: weights/, inference/, report")
        how = p.add_mutually_exclusive_group(required=True)
        how.add_argument("--ratio", type=float, help="fraction of filters to prune in every prunable conv, in (0, 1)")
        how.add_argument("--flops-target", type=float, help="fraction of FLOPs to remove, in (0, 1), e.g. 0.3")
        p.add_argument(
            "--criterion",
            choices=["l1", "l2", "fpgm"],
            default=_default(PruneConfig, "criterion"),
            help="which filters go: smallest l1 or l2 norm, or fpgm (geometric median) (default: %(default)s)",
        )
        p.add_argument(
            "--sensitivity",
            action="store_true",
            help="choose per-layer ratios from measured accuracy drops (saved as sensitivity.json and .png)",
        )
        p.add_argument(
            "--finetune-epochs",
            type=int,
            default=_default(PruneConfig, "finetune_epochs"),
            help="fine-tune epochs after pruning, 0 = none (default: %(default)s)",
        )
        p.add_argument(
            "--lr",
            type=float,
            default=_default(PruneConfig, "lr"),
            help="fine-tune learning rate (default: %(default)s)",
        )
        p.add_argument("--resume", action="store_true", help="continue an interrupted fine-tune")
        p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
        p.set_defaults(handler=prune)
        return
    if command != "ptq":
        raise ValueError(command)
    p.add_argument("-c", "--config", help="vslim PTQ YAML or PaddleVideo quantization YAML")
    p.add_argument("--model-dir", help="FP32 inference model folder")
    p.add_argument("--calib-list", help="PaddleVideo list of calibration clips")
    p.add_argument(
        "--calib-prefix", help="folder the calibration list's paths are relative to (default: the list's own folder)"
    )
    p.add_argument("--val-list", help="labelled list for accuracy (needed by --algo auto)")
    p.add_argument(
        "--val-prefix", help="folder the validation list's paths are relative to (default: the list's own folder)"
    )
    p.add_argument("--out", help="INT8 model folder (PaddleVideo YAML: quant_output_dir)")
    p.add_argument(
        "--algo",
        help=f"calibration algorithm: {', '.join(PTQ_ALGOS)}, or auto (default: "
        f"{_default(PTQConfig, 'algo')}; KL for PaddleVideo YAML)",
    )
    p.add_argument(
        "--candidates",
        help=f"algorithms --algo auto tries, comma-separated (default: {_default_list(PTQConfig, 'candidates')})",
    )
    p.add_argument(
        "--tolerance",
        type=float,
        help="--algo auto: largest top-1 drop accepted, in points "
        f"(default: {100 * _default(PTQConfig, 'tolerance'):g})",
    )
    p.add_argument(
        "--batch-size", type=int, help=f"calibration batch size (default: {_default(PTQConfig, 'batch_size')})"
    )
    p.add_argument("--batch-nums", type=int, help="calibration batches (default: the whole list)")
    p.add_argument(
        "--quantize-ops",
        help=f"op types to quantize, comma-separated (default: {_default_list(PTQConfig, 'quantize_ops')})",
    )
    p.add_argument(
        "--threads", type=int, help=f"CPU threads for evaluation (default: {_default(PTQConfig, 'threads')})"
    )
    p.add_argument("--no-latency", action="store_true", help="skip the batch-1 latency figures in the report")
    p.add_argument("--json", action="store_true", help="print the report as JSON (default: Markdown)")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.add_argument("--use_gpu", help=argparse.SUPPRESS)  # PaddleVideo's script flag: calibration runs on CPU
    p.set_defaults(handler=ptq)


def register(sub) -> None:
    add_command_group(sub, "compress", "INT8 quantization and pruning", COMMANDS, configure, descriptions=DESCRIPTIONS)


def _overrides(args) -> dict:
    from ..config import ListConfig

    o = {
        "model_dir": args.model_dir,
        "output_dir": args.out,
        "algo": args.algo,
        "tolerance": args.tolerance / 100 if args.tolerance is not None else None,
        "batch_size": args.batch_size,
        "batch_nums": args.batch_nums,
        "threads": args.threads,
        "candidates": args.candidates.split(",") if args.candidates else None,
        "quantize_ops": args.quantize_ops.split(",") if args.quantize_ops else None,
        "calib": ListConfig(args.calib_list, data_prefix=args.calib_prefix or "") if args.calib_list else None,
        "val": ListConfig(args.val_list, data_prefix=args.val_prefix or "") if args.val_list else None,
    }
    if args.overwrite:
        o["overwrite"] = True
    if args.no_latency:
        o["measure_latency"] = False
    return {k: v for k, v in o.items() if v is not None}


def build_config(args):
    from vslim.compress.config import PTQConfig

    from ..config import from_mapping, load_yaml
    from ..errors import ConfigError
    from ..paddlevideo_config import is_paddlevideo_config, ptq_config_from_paddlevideo

    overrides = _overrides(args)
    if args.config:
        data = load_yaml(args.config)
        if is_paddlevideo_config(data):
            return ptq_config_from_paddlevideo(args.config, data, **overrides)
        lists = {k: overrides.pop(k) for k in ("calib", "val") if k in overrides}
        cfg = from_mapping(PTQConfig, {**data, **overrides}, str(args.config))
        for key, value in lists.items():
            setattr(cfg, key, value)
        return cfg.validate()
    missing = [
        f"--{n.replace('_', '-')}"
        for n, key in (("model_dir", "model_dir"), ("calib_list", "calib"), ("out", "output_dir"))
        if key not in overrides
    ]
    if missing:
        raise ConfigError(f"give -c CONFIG or all of --model-dir, --calib-list, --out (missing {', '.join(missing)})")
    return PTQConfig(**overrides).validate()


def ptq(args) -> int:
    from ..compress.compression_report import ptq_markdown
    from ..compress.ptq import quantize

    if args.use_gpu is not None:
        say("note: vslim calibrates on the CPU; --use_gpu is accepted for PaddleVideo compatibility and ignored")
    cfg = build_config(args)
    say(f"quantizing {cfg.model_dir} -> {cfg.output_dir} (algo {cfg.algo})")
    result = quantize(cfg)
    if args.json:
        print_json(result.report)
    else:
        print(ptq_markdown(result.report))
    say(f"INT8 model written to {Path(result.output_dir)}")
    return 0


def _list(path, prefix):
    from ..config import ListConfig

    return ListConfig(path, data_prefix=prefix)


def qat(args) -> int:
    from vslim.compress.config import QATConfig

    from ..compress.compression_report import qat_markdown
    from ..compress.qat import qat as run

    cfg = QATConfig(
        weights=args.weights,
        arch=args.arch,
        train=_list(args.train_list, args.train_prefix),
        val=_list(args.val_list, args.val_prefix),
        output_dir=args.out,
        epochs=args.epochs,
        lr=args.lr,
        warmup_epochs=args.warmup,
        batch_size=args.batch_size,
        quantizable_layers=[name for name in args.layers.split(",") if name],
        ptq_model=args.ptq_model,
        resume=args.resume,
        overwrite=args.overwrite,
    )
    print(qat_markdown(run(cfg, say=say)))
    return 0


def prune(args) -> int:
    from vslim.compress.config import PruneConfig

    from ..compress.compression_report import prune_markdown
    from ..compress.prune import prune_model

    cfg = PruneConfig(
        weights=args.weights,
        arch=args.arch,
        train=_list(args.train_list, args.train_prefix),
        val=_list(args.val_list, args.val_prefix),
        output_dir=args.out,
        ratio=args.ratio,
        flops_target=args.flops_target,
        criterion=args.criterion,
        sensitivity=args.sensitivity,
        finetune_epochs=args.finetune_epochs,
        lr=args.lr,
        resume=args.resume,
        overwrite=args.overwrite,
    )
    print(prune_markdown(prune_model(cfg, say=say)))
    return 0
