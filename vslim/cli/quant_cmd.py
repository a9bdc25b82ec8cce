"""``vslim compress ptq`` (alias ``vslim-quant``): post-training INT8 quantization.

Takes flags, a vslim PTQ YAML, or PaddleVideo's quantization YAML unchanged
(``vslim-quant -c pptsm_k400_frames_uniform_quantization.yaml``); flags given on
the command line override the file.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from .common import print_json, say


def configure(command: str, p: argparse.ArgumentParser) -> None:
    if command != "ptq":
        raise ValueError(command)
    p.add_argument("-c", "--config", help="vslim PTQ YAML or PaddleVideo quantization YAML")
    p.add_argument("--model-dir", help="FP32 inference model folder")
    p.add_argument("--calib-list", help="PaddleVideo list of calibration clips")
    p.add_argument("--calib-prefix", help="folder the calibration list's paths are relative to")
    p.add_argument("--val-list", help="labelled list for accuracy (needed by --algo auto)")
    p.add_argument("--val-prefix", help="folder the validation list's paths are relative to")
    p.add_argument("--out", help="INT8 model folder (PaddleVideo YAML: quant_output_dir)")
    p.add_argument("--algo", help="KL, hist, mse, avg, abs_max, or auto (default hist; KL for PaddleVideo YAML)")
    p.add_argument("--candidates", help="algorithms auto tries, comma-separated (default avg,abs_max,hist,mse)")
    p.add_argument("--tolerance", type=float, help="auto: largest top-1 drop accepted, in points (default 1.0)")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--batch-nums", type=int, help="calibration batches (default: the whole list)")
    p.add_argument("--quantize-ops", help="op types to quantize, comma-separated (default conv2d,depthwise_conv2d)")
    p.add_argument("--threads", type=int, help="CPU threads for evaluation (default 2)")
    p.add_argument("--no-latency", action="store_true", help="skip the batch-1 latency figures in the report")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--use_gpu", help=argparse.SUPPRESS)  # PaddleVideo's script flag: calibration runs on CPU
    p.set_defaults(handler=ptq)


def register(sub) -> None:
    compress = sub.add_parser("compress", help="INT8 quantization and pruning")
    csub = compress.add_subparsers(dest="compress_command", metavar="COMMAND")
    csub.required = True
    configure("ptq", csub.add_parser("ptq", help="post-training quantization to INT8",
                                     description=__doc__))


def _overrides(args) -> dict:
    from ..config import ListConfig

    o = {
        "model_dir": args.model_dir, "output_dir": args.out, "algo": args.algo, "tolerance":
        args.tolerance / 100 if args.tolerance is not None else None, "batch_size": args.batch_size,
        "batch_nums": args.batch_nums, "threads": args.threads,
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
    from ..config import PTQConfig, from_mapping, load_yaml
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
    missing = [f"--{n.replace('_', '-')}" for n, key in (("model_dir", "model_dir"), ("calib_list", "calib"),
                                                         ("out", "output_dir")) if key not in overrides]
    if missing:
        raise ConfigError(f"give -c CONFIG or all of --model-dir, --calib-list, --out (missing {', '.join(missing)})")
    return PTQConfig(**overrides).validate()


def ptq(args) -> int:
    from ..compress.ptq import quantize
    from ..compress.report import ptq_markdown

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

