"""Model commands: ``vslim models``, ``train``, ``export``, ``predict``, ``info``."""

from __future__ import annotations

import argparse

from .common import add_decoder_arg, add_predictor_args, predictor_config, print_json, say


def _list_args(p: argparse.ArgumentParser, name: str, required: bool, help: str) -> None:
    p.add_argument(f"--{name}-list", required=required, help=help)
    p.add_argument(
        f"--{name}-prefix", default="", help="folder the list's paths are relative to (default: the list's folder)"
    )


def _list_config(path, prefix, suffix="img_{:05}.jpg"):
    from ..config import ListConfig

    return ListConfig(file_path=path, data_prefix=prefix, suffix=suffix) if path else None


def configure(command: str, p: argparse.ArgumentParser) -> None:
    if command == "models":
        p.set_defaults(handler=models)
    elif command == "train":
        p.add_argument("--arch", default="pptsm_small", help="architecture (see `vslim models`)")
        _list_args(p, "train", True, "PaddleVideo list (videos or frames) to train on")
        _list_args(p, "val", False, "list evaluated after each epoch; the best epoch is kept")
        p.add_argument("--out", required=True, help="output folder: model.pdparams + vslim.json")
        p.add_argument("--labels", help="class names, one per line (default: labels.txt beside the list)")
        p.add_argument("--init-weights", help=".pdparams to start from (PaddleVideo checkpoints load)")
        p.add_argument("--epochs", type=int, default=12, help="passes over the training list")
        p.add_argument("--batch-size", type=int, default=16, help="clips per training step")
        p.add_argument("--lr", type=float, default=0.003, help="learning rate (cosine schedule)")
        p.add_argument(
            "--seed", type=int, default=0, help="fixes the data order and the random sampling (default: %(default)s)"
        )
        p.add_argument("--resume", action="store_true", help="continue an interrupted run from its last epoch")
        p.add_argument("--overwrite", action="store_true", help="replace an existing --out folder")
        p.set_defaults(handler=train)
    elif command == "export":
        p.add_argument("--arch", help="architecture (default: from vslim.json beside the weights)")
        src = p.add_mutually_exclusive_group(required=True)
        src.add_argument("--weights", help=".pdparams file (ours or PaddleVideo's)")
        src.add_argument("--random-init", action="store_true", help="export untrained weights (speed tests)")
        p.add_argument("--num-classes", type=int, help="with --random-init")
        p.add_argument("--out", required=True, help="output inference model folder")
        p.add_argument("--labels", help="class names, one per line")
        p.add_argument("--num-seg", type=int, help="segments per clip (default: the architecture's)")
        p.add_argument("--target-size", type=int, help="input height/width (default: the architecture's)")
        p.add_argument("--short-size", type=int, help="short side before the centre crop (default: the architecture's)")
        p.add_argument("--overwrite", action="store_true", help="replace an existing --out folder")
        p.set_defaults(handler=export)
    elif command == "predict":
        p.add_argument(
            "--model-dir",
            required=True,
            help="inference model folder (FP32 or INT8), as `vslim export` "
            "or `vslim compress` writes it, or as PaddleVideo's tools/export_model.py does",
        )
        _config_arg(p)
        p.add_argument(
            "--video",
            "--input-file",
            "-i",
            dest="video",
            required=True,
            metavar="PATH",
            help="a video file, a folder of frames (img_00001.jpg, ...), or a folder of videos",
        )
        p.add_argument("--top-k", type=int, default=1, metavar="K", help="how many classes to print per video")
        p.add_argument("--json", action="store_true", help="print JSON instead of PaddleVideo's lines")
        add_decoder_arg(p)
        add_predictor_args(p)
        p.set_defaults(handler=predict)
    elif command == "info":
        p.add_argument("--model-dir", required=True, help="inference model folder to describe")
        _config_arg(p)
        p.add_argument("--json", action="store_true", help="print everything as JSON (all of vslim.json)")
        p.set_defaults(handler=info)
    elif command == "import":
        p.add_argument("--model-dir", required=True, help="a model folder PaddleVideo's tools/export_model.py wrote")
        p.add_argument(
            "--config",
            required=True,
            metavar="X.yaml",
            help="the PaddleVideo config it was exported with (configs/recognition/...)",
        )
        p.add_argument("--labels", help="class names, one per line (default: the class numbers)")
        p.add_argument(
            "--fast-resize",
            action="store_true",
            help="resize with OpenCV where PaddleVideo uses Pillow: faster preprocessing (9x on 1080p "
            "frames), inputs no longer exactly PaddleVideo's (default: exactly PaddleVideo's arrays)",
        )
        p.add_argument("--overwrite", action="store_true", help="replace a vslim.json already in the folder")
        p.set_defaults(handler=import_model)


def _config_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config",
        metavar="X.yaml",
        help="the PaddleVideo config the model was exported with: its "
        "INFERENCE section gives the preprocessing (default: vslim.json, or what the input shapes prove)",
    )


DESCRIPTIONS = {
    "predict": "Classify videos with an inference model and print PaddleVideo's lines (`Current video file:`, "
    "`top-1 class:`, ...), or JSON with --json. Inputs are checked before the model loads; a video "
    "shorter than the model's clip is sampled as PaddleVideo does (frames repeated) and a note says so.",
    "info": "Show what a model folder declares: files, precision, inputs and outputs, classes, preprocessing, "
    "architecture. --json prints the full record.",
    "import": "Record a PaddleVideo export's preprocessing in its folder: reads the INFERENCE section of the "
    "config it was exported with (the inference helper and its parameters), checks it against the "
    "model's inputs and writes vslim.json, so every later command (predict, compress, package, serve) "
    "feeds the model exactly what PaddleVideo's inference would.",
}


def register(sub) -> None:
    for name, help in (
        ("models", "list the model zoo"),
        ("train", "fine-tune a zoo model on a PaddleVideo list"),
        ("export", "weights -> Paddle inference model + vslim.json"),
        ("predict", "classify videos with an inference model"),
        ("info", "show what a model folder declares"),
        ("import", "record a PaddleVideo export's preprocessing (from its config) in vslim.json"),
    ):
        configure(name, sub.add_parser(name, help=help, description=DESCRIPTIONS.get(name, help)))


def models(args) -> int:
    from ..models import ARCHS

    for spec in ARCHS.values():
        pre = spec.preprocess
        origin = f" [PaddleVideo model_name {spec.paddlevideo_name}]" if spec.paddlevideo_name else ""
        print(f"{spec.name:<12} {pre.num_seg}x{pre.target_size}x{pre.target_size}  {spec.description}{origin}")
    return 0


def train(args) -> int:
    from ..config import TrainConfig
    from ..train import train as run_train

    cfg = TrainConfig(
        arch=args.arch,
        train=_list_config(args.train_list, args.train_prefix),
        val=_list_config(args.val_list, args.val_prefix),
        output_dir=args.out,
        labels=args.labels,
        init_weights=args.init_weights,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        resume=args.resume,
        overwrite=args.overwrite,
    )

    def report(r):
        val = f", val top-1 {100 * r['val_top1']:.1f}%" if "val_top1" in r else ""
        say(
            f"epoch {r['epoch']}: loss {r['loss']:.3f}, train top-1 {100 * r['train_top1']:.1f}%{val} "
            f"({r['seconds']:.1f}s)"
        )

    result = run_train(cfg, on_epoch=report)
    best = f" (best val top-1 {100 * result.best_val_top1:.1f}%)" if result.best_val_top1 is not None else ""
    say(f"saved {result.output_dir / 'model.pdparams'}{best}")
    print(result.output_dir)
    return 0


def export(args) -> int:
    from ..export import export_model

    out = export_model(
        None if args.random_init else args.weights,
        args.out,
        arch=args.arch,
        labels=args.labels,
        num_seg=args.num_seg,
        target_size=args.target_size,
        short_size=args.short_size,
        overwrite=args.overwrite,
        num_classes=args.num_classes,
    )
    say(f"exported inference model to {out}")
    print(out)
    return 0


def predict(args) -> int:
    from ..errors import ConfigError
    from ..model_meta import check_model_folder
    from ..predict import check_inputs, classify, expand_inputs, format_paddlevideo

    if args.top_k < 1:
        raise ConfigError(f"--top-k must be >= 1, got {args.top_k}")
    config = predictor_config(args)
    check_model_folder(args.model_dir)
    # Loading the model takes seconds: a missing or unreadable input is reported before it.
    sources = expand_inputs(args.video)
    check_inputs(sources, args.decoder)
    from ..inference import inspect_model
    from ..inference.runtimes import open_predictor

    info = inspect_model(args.model_dir, paddlevideo_config=args.config)
    if info.meta.preprocess_unknown:
        raise ConfigError(f"cannot classify videos with {args.model_dir}: {info.meta.preprocess_unknown}")
    predictor = open_predictor(args.model_dir, config, info)
    results = classify(predictor, sources, args.top_k, decoder=args.decoder)
    for r in results:
        if r.sampling is not None:
            say(f"warning: {r.source}: {r.sampling.note}")
    if args.json:
        print_json(
            {
                "model": str(args.model_dir),
                "runtime": predictor.runtime,
                "precision": predictor.precision,
                "predictions": [r.to_dict() for r in results],
            }
        )
    else:
        for r in results:
            print(format_paddlevideo(r))
    return 0


def info(args) -> int:
    from ..config import to_dict
    from ..inference import inspect_model

    m = inspect_model(args.model_dir, paddlevideo_config=args.config)
    if args.json:
        print_json(
            {
                "model_file": str(m.model_file),
                "params_file": str(m.params_file),
                "precision": m.precision,
                "inputs": [s.describe() for s in m.inputs],
                "outputs": [s.describe() for s in m.outputs],
                "meta": to_dict(m.meta),
            }
        )
    else:
        print(format_info(m))
    return 0


MAX_LISTED_CLASSES = 10


def _clip_row(meta, pre) -> tuple[str, str]:
    if meta.preprocess_unknown:
        return "clip", f"unknown: {meta.preprocess_unknown}"
    if meta.recipe is not None:
        return "clip", f"{meta.recipe.helper}: {meta.recipe.describe()} (from {meta.recipe.source})"
    return "clip", (
        f"{pre.num_seg} segments x {pre.seg_len} frame{'s' if pre.seg_len > 1 else ''}, short side "
        f"{pre.short_size}, centre crop {pre.target_size}x{pre.target_size}"
    )


def import_model(args) -> int:
    from ..errors import OutputExistsError
    from ..inference import inspect_model
    from ..model_meta import META_FILE, check_model_folder

    folder = check_model_folder(args.model_dir)
    if (folder / META_FILE).is_file() and not args.overwrite:
        raise OutputExistsError(f"{folder / META_FILE} exists; pass --overwrite to replace it")
    labels = None
    if args.labels:
        from ..data.lists import read_labels

        labels = read_labels(args.labels)
    info = inspect_model(folder, paddlevideo_config=args.config)
    meta = info.meta if labels is None else info.meta.derive(labels=labels)
    if labels is not None and len(labels) != meta.num_classes:
        from ..errors import ModelError

        raise ModelError(f"{args.labels} has {len(labels)} labels for a model of {meta.num_classes} classes")
    meta = meta.derive(model_file=info.model_file.name, params_file=info.params_file.name, precision=info.precision)
    recipe = meta.recipe
    if recipe is None:  # --config is required, and its INFERENCE section always yields a recipe
        from ..errors import ConfigError

        raise ConfigError(f"{args.config} gives no preprocessing recipe for {info.model_dir}")
    recipe.fast_resize = bool(args.fast_resize)
    meta.save(folder)
    say(f"{info.model_dir}: {recipe.helper} — {recipe.describe()}")
    print(folder / META_FILE)
    return 0


def format_info(m) -> str:
    """A few aligned lines a person reads at a glance; ``--json`` has the rest."""
    from ..model_meta import META_FILE

    meta, pre = m.meta, m.meta.preprocess
    has_meta = (m.model_dir / META_FILE).is_file()
    files = [m.model_file.name, m.params_file.name] + ([META_FILE] if has_meta else [])
    labels = meta.labels[:MAX_LISTED_CLASSES]
    more = f", ... ({meta.num_classes} in all)" if meta.num_classes > len(labels) else ""
    rows = [
        ("model folder", str(m.model_dir)),
        ("files", ", ".join(files) + ("" if has_meta else f" (no {META_FILE}: defaults read from the program)")),
        ("precision", m.precision),
        ("arch", meta.arch or "unknown"),
        *[("input" if len(m.inputs) == 1 else f"input {i}", s.describe()) for i, s in enumerate(m.inputs)],
        *[("output" if len(m.outputs) == 1 else f"output {i}", s.describe()) for i, s in enumerate(m.outputs)],
        ("classes", f"{meta.num_classes}: " + ", ".join(labels) + more),
        _clip_row(meta, pre),
    ]
    if meta.recipe is not None and meta.recipe.assumed:
        rows.append(("assumed", "; ".join(meta.recipe.assumed) + " — give --config X.yaml to be sure"))
    for key in ("quantization", "pruning"):
        record = getattr(meta, key)
        if record:
            facts = [f"{k}={v}" for k, v in record.items() if isinstance(v, (str, int, float, bool))][:4]
            rows.append((key, ", ".join(facts) or "yes"))
    if meta.source:
        rows.append(("source", meta.source))
    if has_meta:
        rows.append(("created", f"{meta.created} by vslim {meta.vslim_version}"))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)
