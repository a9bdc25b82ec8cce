"""``vslim demo``: the main job end to end on the built-in synthetic data."""

from __future__ import annotations

import argparse

from .common import say

DESCRIPTION = (
    "The main job end to end on built-in synthetic data, nothing downloaded: write a synthetic PaddleVideo data "
    "set, train the small PP-TSM, export it, quantize it to INT8 (PTQ, algorithm chosen on validation clips), "
    "classify the demo video with FP32 and INT8, package the INT8 model as a Paddle Serving bundle, serve it on a "
    "free local port and classify through Paddle Serving and KServe v2 over gRPC and HTTP, build Paddle Lite ARM "
    ".nb files of both models (the Lite toolchain is set up on first use), and print the FP32-vs-INT8 table. "
    "Each step reuses an earlier run's output unless --fresh. --full adds prune -> fine-tune -> QAT -> serve."
)


def configure(command: str, p: argparse.ArgumentParser) -> None:
    p.add_argument("--workdir", default="vslim-demo", help="where every artefact goes (default ./vslim-demo)")
    p.add_argument("--epochs", type=int, default=12, help="training epochs for the small PP-TSM (default: 12)")
    p.add_argument("--seed", type=int, default=0, help="seed of the data and the training (default: 0)")
    p.add_argument("--fresh", action="store_true", help="redo every step instead of reusing earlier outputs")
    p.add_argument(
        "--full",
        action="store_true",
        help="also run the compression chain: prune -> fine-tune -> QAT -> serving bundle -> serve",
    )
    p.set_defaults(handler=demo)


def register(sub) -> None:
    help = (
        "the whole path on built-in data: synthetic videos, train, export, INT8, predict, serve over every "
        "protocol, Paddle Lite .nb files"
    )
    configure("demo", sub.add_parser("demo", help=help, description=DESCRIPTION))


def demo(args) -> int:
    from ..compress.compression_report import ptq_markdown
    from ..demo import run_demo
    from ..predict import format_paddlevideo

    result = run_demo(args.workdir, epochs=args.epochs, seed=args.seed, fresh=args.fresh, say=say, full=args.full)
    for name, pred in result.predictions.items():
        print(f"== {name.upper()} ({result.fp32_dir if name == 'fp32' else result.int8_dir})")
        print(format_paddlevideo(pred))
    print()
    print("== the INT8 model served (Paddle Serving and KServe v2, gRPC and HTTP, on one port)")
    for protocol, (label, score) in result.served.items():
        print(f"{protocol:<18} top-1 {label} ({score:.4f})")
    print()
    print("== Paddle Lite (ARM .nb; ARM files cannot run on this host, so they are checked structurally)")
    for name, report in result.lite_reports.items():
        arm = report["targets"]["arm"]
        print(
            f"{name}: {arm['file']} {arm['bytes'] / 2**20:.2f} MiB, {arm['kernels']['int8_kernels']} int8 kernels "
            f"of {arm['kernels']['total_kernels']}; temporal_shift: {report['temporal_shift']['rewritten']} "
            f"rewritten ({report['temporal_shift']['shift_ratios']})"
        )
    print()
    print(ptq_markdown(result.ptq_report))
    if result.chain:
        from ..compress.compression_report import prune_markdown, qat_markdown

        print(prune_markdown(result.chain["prune"]))
        print(qat_markdown(result.chain["qat"]))
        for protocol, (label, score) in result.chain["served"].items():
            print(f"pruned INT8 served, {protocol:<18} top-1 {label} ({score:.4f})")
    return 0
