"""Flag groups several subcommands share, and how they become configs."""

from __future__ import annotations

import argparse
import json
import sys

from .. import runtime_registry
from ..config import PredictorConfig


def add_predictor_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("inference backend")
    g.add_argument(
        "--device",
        choices=["cpu", "gpu"],
        default="cpu",
        help="where the model runs; gpu needs paddlepaddle-gpu and a CUDA GPU",
    )
    g.add_argument(
        "--use-gpu", dest="device", action="store_const", const="gpu", help="same as --device gpu (the older spelling)"
    )
    g.add_argument("--use-tensorrt", action="store_true", help="run through TensorRT (implies --device gpu)")
    add_runtime_arg(g, "auto takes what vslim-package measured fastest for a bundle, else the reference")
    g.add_argument(
        "--precision",
        choices=["auto", "fp32", "fp16", "bf16", "int8"],
        default="auto",
        help="auto: the model's own (INT8 models run INT8 kernels); fp16 needs --device gpu; bf16 needs "
        "a CPU with AVX-512 BF16 or AMX",
    )
    g.add_argument("--threads", type=int, default=2, help="CPU threads")
    g.add_argument("--no-onednn", action="store_true", help="CPU without oneDNN (plain kernels)")
    g.add_argument("--gpu-id", type=int, default=0, help="which GPU, with --device gpu (default: %(default)s)")
    g.add_argument("--trt-workspace-mb", type=int, default=1024, help="TensorRT workspace in MiB")
    g.add_argument("--trt-max-batch", type=int, default=8, help="largest batch of the TensorRT shape profile")


def add_runtime_arg(parser, auto: str) -> None:
    """``--runtime``: ``auto`` and every row of the runtime registry, each with its one-line summary."""
    rows = "; ".join(f"{r.name}: {r.summary}" for r in runtime_registry.rows())
    parser.add_argument(
        "--runtime",
        choices=runtime_registry.choices(),
        default=runtime_registry.AUTO,
        help=f"{auto} ({runtime_registry.REFERENCE}); {rows}. Runtimes other than {runtime_registry.REFERENCE} run "
        "the same model converted once (cached, checked against Paddle) (default: %(default)s)",
    )


def add_decoder_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--decoder",
        choices=["auto", "pyav", "opencv"],
        default="auto",
        help="video decoder: auto = PyAV (exact key-frame seeks) when installed, else OpenCV; "
        "both give the same frames",
    )


def predictor_config(args: argparse.Namespace) -> PredictorConfig:
    gpu = args.device == "gpu" or args.use_tensorrt
    return PredictorConfig(
        device="gpu" if gpu else "cpu",
        threads=args.threads,
        use_onednn=not args.no_onednn,
        precision=args.precision,
        runtime=args.runtime,
        use_tensorrt=args.use_tensorrt,
        gpu_id=args.gpu_id,
        trt_workspace_mb=args.trt_workspace_mb,
        trt_max_batch_size=args.trt_max_batch,
    ).validate()


def add_command_group(sub, name: str, help: str, commands: dict, configure, descriptions=None) -> None:
    """``vslim NAME COMMAND``: a group of subcommands, each configured by the module's ``configure``."""
    group = sub.add_parser(name, help=help, description=help)
    gsub = group.add_subparsers(dest=f"{name}_command", metavar="COMMAND")
    gsub.required = True
    for command, command_help in commands.items():
        description = (descriptions or {}).get(command, command_help)
        configure(command, gsub.add_parser(command, help=command_help, description=description))


def print_json(data) -> None:
    json.dump(data, sys.stdout, indent=2)
    sys.stdout.write("\n")


def say(message: str) -> None:
    """Human-readable progress on stderr, so stdout stays parseable."""
    print(message, file=sys.stderr, flush=True)
