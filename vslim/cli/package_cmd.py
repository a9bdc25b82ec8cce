"""``vslim package`` / ``vslim-package --target serving|lite|onnx``: flags -> ``vslim.packaging.package``.

Targets, their help and their configs come from :data:`vslim.packaging.TARGETS`.
Each target-specific flag names the target it belongs to (:data:`OPTIONS`), so a
flag given for another target is refused instead of silently ignored.
"""

from __future__ import annotations

import argparse

from ..errors import ConfigError
from ..packaging import TARGETS
from .common import add_runtime_arg, say

# flag dest -> (target, config field); values pass through unchanged unless noted in _option_value.
OPTIONS = {
    "runtime": ("serving", "runtime"),
    "precision": ("serving", "precision"),
    "threads": ("serving", "threads"),
    "val_list": ("serving", "val_list"),
    "calib_list": ("serving", "calib_list"),
    "valid_targets": ("lite", "targets"),
    "quant_type": ("lite", "quant_type"),
    "enable_fp16": ("lite", "enable_fp16"),
    "no_rewrite": ("lite", "rewrite_temporal_shift"),
    "no_verify": ("lite", "verify"),
    "verify_list": ("lite", "val"),
    "verify_clips": ("lite", "verify_clips"),
    "opt_bin": ("lite", "opt_bin"),
}


def configure(command: str, p: argparse.ArgumentParser) -> None:
    targets = "; ".join(f"{name}: {t.help}" for name, t in TARGETS.items())
    p.add_argument("--target", required=True, choices=list(TARGETS), help=f"what to package for ({targets})")
    p.add_argument(
        "--model-dir",
        required=True,
        help="inference model folder (FP32 or INT8: inference.pdmodel/.pdiparams + vslim.json)",
    )
    p.add_argument("--out", required=True, help="output folder (written under a temporary name, then renamed)")
    p.add_argument(
        "--config",
        metavar="X.yaml",
        help="the PaddleVideo config a PaddleVideo export was made with: its preprocessing is recorded "
        "in the package (as `vslim import --config` records it in the model folder)",
    )
    p.add_argument("--name", help="bundle / .nb name (default: the architecture, else the model folder's name)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    serving = p.add_argument_group("--target serving")
    add_runtime_arg(
        serving,
        "auto measures every runtime and precision here and records the fastest that computes the model right "
        "(vslim-serve uses it); one runtime records that one; nothing recorded serves with the reference",
    )
    serving.add_argument(
        "--precision",
        choices=["auto", "fp32", "bf16", "int8"],
        default="auto",
        help="with one --runtime: its precision (default: auto, the model's own)",
    )
    serving.add_argument("--threads", type=int, default=2, help="CPU threads to measure with (default: 2)")
    serving.add_argument(
        "--val-list",
        help="PaddleVideo list: each runtime must also give FP32's top-1 on "
        "these clips (>= 99%%, up to 32 clips) to be chosen",
    )
    serving.add_argument(
        "--calib-list",
        help="PaddleVideo list (up to 32 clips): also calibrate OpenVINO's own "
        "INT8 (NNCF) of an FP32 model and measure it with the others",
    )
    lite = p.add_argument_group("--target lite")
    lite.add_argument(
        "--valid-targets",
        nargs="+",
        default=["arm"],
        metavar="TARGET",
        help="one .nb per target spec: arm, x86, arm,opencl ... (default: arm)",
    )
    lite.add_argument(
        "--quant-type",
        choices=["int8", "int16"],
        help="Lite's dynamic weight quantization (not needed for vslim INT8 models)",
    )
    lite.add_argument("--enable-fp16", action="store_true", help="FP16 kernels (ARMv8.2)")
    lite.add_argument(
        "--no-rewrite",
        action="store_true",
        help="keep temporal_shift as is (Lite then computes PP-TSM wrongly; for comparison only)",
    )
    lite.add_argument("--no-verify", action="store_true", help="skip running x86 .nb files against Paddle")
    lite.add_argument("--verify-list", help="PaddleVideo list whose clips verify x86 .nb files (default: random clips)")
    lite.add_argument("--verify-clips", type=int, default=16, help="clips to verify x86 files on (default: 16)")
    lite.add_argument("--opt-bin", help="a paddle_lite_opt to use instead of the vslim toolchain")
    p.set_defaults(handler=package, option_defaults={dest: p.get_default(dest) for dest in OPTIONS})


def register(sub) -> None:
    help = "package a model for serving (Paddle Serving bundle), Paddle Lite (.nb) or ONNX"
    configure("package", sub.add_parser("package", help=help, description=help + "."))


def _option_value(dest: str, value):
    if dest in ("no_rewrite", "no_verify"):
        return not value
    if dest == "verify_list":
        return {"file_path": value} if value else None
    return value


def options_for(args: argparse.Namespace, parser_defaults: dict) -> dict:
    """The target's config fields from the flags; another target's flag, when given, is an error."""
    options = {
        "model_dir": args.model_dir,
        "output_dir": args.out,
        "name": args.name,
        "overwrite": args.overwrite,
        "paddlevideo_config": args.config,
    }
    for dest, (owner, field) in OPTIONS.items():
        value = getattr(args, dest)
        if owner == args.target:
            options[field] = _option_value(dest, value)
        elif value != parser_defaults.get(dest):
            flag = "--" + dest.replace("_", "-")
            raise ConfigError(
                f"{flag} applies to --target {owner}, not --target {args.target}; drop it or package for {owner}"
            )
    return options


def package(args) -> int:
    from ..packaging import package as run

    result = run(args.target, options_for(args, args.option_defaults), say=say)
    for line in result.summary:
        say(line)
    print(result.path)
    return 0
