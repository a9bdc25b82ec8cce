"""``vslim lite setup|doctor|verify``: the Paddle Lite toolchain and ``.nb`` checks."""
from __future__ import annotations

import argparse
from pathlib import Path

from .common import add_command_group, print_json, say


def configure(command: str, p: argparse.ArgumentParser) -> None:
    if command == "setup":
        p.add_argument("--home", help="vslim home (default $VSLIM_HOME or ~/.cache/vslim)")
        p.add_argument("--force", action="store_true", help="rebuild from scratch")
        p.set_defaults(handler=setup)
    elif command == "doctor":
        p.add_argument("--home")
        p.add_argument("--opt-bin")
        p.set_defaults(handler=doctor)
    elif command == "verify":
        p.add_argument("--nb", required=True, help="the .nb file")
        p.add_argument("--model-dir", required=True, help="the inference model it was made from")
        p.add_argument("--target", choices=["arm", "x86"], help="default: x86 for *_x86.nb, else arm")
        p.add_argument("--val-list", help="clips to compare on (default: random clips)")
        p.add_argument("--clips", type=int, default=16)
        p.add_argument("--opt-bin")
        p.set_defaults(handler=verify)


def register(sub) -> None:
    add_command_group(sub, "lite", "Paddle Lite toolchain and .nb checks", {
        "setup": "build the isolated Python 3.9 + paddlelite 2.13rc0 toolchain",
        "doctor": "show which Lite optimizer is found and its versions",
        "verify": "run an x86 .nb against Paddle Inference, or check an ARM .nb's structure"}, configure)


def setup(args) -> int:
    from ..lite.toolchain import setup_toolchain

    tc = setup_toolchain(Path(args.home) if args.home else None, force=args.force, say=say)
    print(tc.location)
    return 0


def doctor(args) -> int:
    from ..lite.toolchain import doctor as run

    report = run(args.opt_bin, Path(args.home) if args.home else None)
    print_json(report)
    return 0 if report["found"] else 2


def verify(args) -> int:
    from ..config import ListConfig
    from vslim.lite.errors import LiteError
    from ..inference import inspect_model
    from ..lite.optimizer import kernel_summary, nb_header, view_nb
    from ..lite.toolchain import find_toolchain
    from ..lite.verify import structural, verification_clips, verify_x86

    nb = Path(args.nb)
    if not nb.is_file():
        raise LiteError(f".nb file {nb} does not exist")
    target = args.target or ("x86" if nb.stem.endswith("_x86") else "arm")
    tc = find_toolchain(args.opt_bin)
    info = inspect_model(args.model_dir)
    header = nb_header(nb)
    if target == "x86":
        clips, source = verification_clips(info, args.clips, ListConfig(args.val_list) if args.val_list else None)
        result = verify_x86(tc, nb, info, clips, source)
    else:
        kernels = kernel_summary(tc, info.model_file, info.params_file, "arm") if info.quantized else {}
        result = structural(header, view_nb(tc, nb), kernels, info.quantized)
    print_json({"nb": str(nb), "target": target, "header": header, **result})
    return 0 if result["passed"] else 1
