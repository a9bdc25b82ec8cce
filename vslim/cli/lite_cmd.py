"""``vslim lite setup|doctor|verify``: the Paddle Lite toolchain and ``.nb`` checks."""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import add_command_group, print_json, say

COMMANDS = {
    "setup": "build the isolated Python 3.9 + paddlelite 2.13rc0 toolchain",
    "doctor": "show which Lite optimizer is found and its versions",
    "verify": "check that a .nb was made from a model, then run it (x86) or check its structure (ARM)",
}
DESCRIPTIONS = {
    "setup": "Build the isolated Paddle Lite toolchain: a private Python 3.9 (Debian bullseye packages, system "
    "untouched) with paddlelite 2.13rc0, in $VSLIM_HOME/lite-toolchain. Finished steps are skipped on a "
    "rerun.",
    "doctor": "Show where vslim looks for the Paddle Lite optimizer, in order (paddlelite in this Python, "
    "--opt-bin or $VSLIM_LITE_OPT, the vslim toolchain), which one it found, and its version. Exits 2 "
    "when none is found.",
    "verify": "Check a .nb file against the inference model it was made from. First the pair: the .nb's kernel "
    "precision must match the model's, and optimizing the model again must give the same graph "
    "(same bytes when the optimizer and options are the same); a mismatched pair is refused. Then an "
    "x86 .nb is run in Paddle Lite and compared with Paddle Inference; an ARM .nb, which cannot run on "
    "this host, is checked structurally (header, model viewer, int8 kernels). Exit 0: passed; 1: the "
    "check failed; 2: bad input or not a pair.",
}


def configure(command: str, p: argparse.ArgumentParser) -> None:
    if command == "setup":
        p.add_argument("--home", help="vslim home (default: $VSLIM_HOME or ~/.cache/vslim)")
        p.add_argument("--force", action="store_true", help="delete the toolchain and rebuild it from scratch")
        p.set_defaults(handler=setup)
    elif command == "doctor":
        p.add_argument("--home", help="vslim home to look in (default: $VSLIM_HOME or ~/.cache/vslim)")
        p.add_argument("--opt-bin", help="a paddle_lite_opt binary to try (default: $VSLIM_LITE_OPT, if set)")
        p.add_argument("--json", action="store_true", help="print the findings as JSON")
        p.set_defaults(handler=doctor)
    elif command == "verify":
        p.add_argument("--nb", required=True, help="the .nb file")
        p.add_argument("--model-dir", required=True, help="the inference model it was made from")
        p.add_argument(
            "--target",
            choices=["arm", "x86"],
            help="what the .nb is for (default: read from its kernels); x86 files are run, ARM ones "
            "checked structurally",
        )
        p.add_argument("--val-list", help="labelled list of clips to compare on (default: seeded random clips)")
        p.add_argument("--clips", type=int, default=16, help="clips to compare on, x86 only (default: %(default)s)")
        p.add_argument(
            "--opt-bin", help="a paddle_lite_opt binary (default: $VSLIM_LITE_OPT, else the vslim toolchain)"
        )
        p.add_argument("--json", action="store_true", help="print the result as JSON")
        p.set_defaults(handler=verify)


def register(sub) -> None:
    add_command_group(
        sub, "lite", "Paddle Lite toolchain and .nb checks", COMMANDS, configure, descriptions=DESCRIPTIONS
    )


def _aligned(rows: list[tuple[str, object]], indent: str = "  ") -> list[str]:
    width = max(len(k) for k, _ in rows)
    return [f"{indent}{k.ljust(width)}  {v}" for k, v in rows]


def _yes(flag) -> str:
    return "yes" if flag else "no"


def doctor_text(report: dict) -> str:
    lines = [f"Paddle Lite optimizer: {'found' if report['found'] else 'NOT FOUND'}"]
    if report["found"]:
        rows = [
            ("source", report["source"]),
            ("location", report["location"]),
            ("optimizer version", report["optimizer_version"]),
            (
                "can run .nb files",
                _yes(report["can_run_nb"])
                + ("" if report["can_run_nb"] else " (x86 .nb files cannot be verified by running)"),
            ),
        ]
        for key, value in (report.get("toolchain") or {}).items():
            rows.append((f"toolchain {key}", value))
        lines += _aligned(rows)
    else:
        lines += _aligned([("why", report["error"])])
    lines.append("looked in, in this order:")
    lines += _aligned(
        [
            ("1. paddlelite in this Python", _yes(report["paddlelite_in_this_python"])),
            ("2. --opt-bin / $VSLIM_LITE_OPT", report["opt_bin"] or "not given"),
            (
                "3. vslim toolchain",
                f"{report['vslim_toolchain']} "
                f"({'installed' if report['vslim_toolchain_installed'] else 'not installed'})",
            ),
        ]
    )
    return "\n".join(lines)


def setup(args) -> int:
    from ..lite.toolchain import setup_toolchain

    tc = setup_toolchain(Path(args.home) if args.home else None, force=args.force, say=say)
    print(tc.location)
    return 0


def doctor(args) -> int:
    from ..lite.toolchain import doctor as run

    report = run(args.opt_bin, Path(args.home) if args.home else None)
    if args.json:
        print_json(report)
    else:
        print(doctor_text(report))
    return 0 if report["found"] else 2


def verify_text(result: dict) -> str:
    h = result["header"]
    verdict = "PASSED" if result["passed"] else "FAILED"
    how = "ran against Paddle Inference" if result["kind"] == "numeric" else "structural check"
    lines = [f"{Path(result['nb']).name}: {verdict} ({result['target']}, {how})"]
    rows = [
        ("model", result["model_dir"]),
        ("optimizer", f"{h['optimizer_version']} (naive buffer, {h['bytes']} bytes)"),
    ]
    pair = result["pair"]
    match = {
        "identical": "identical to a fresh optimization of the model",
        "same graph": "same graph as a fresh optimization of the model; weights not confirmed",
    }[pair["match"]]
    rows.append(("pair", match))
    rows += [("", line) for line in pair["compared"]]
    if result["kind"] == "numeric":
        rows += [
            ("clips", f"{result['clips']} ({result['clips_source']})"),
            ("reference", result["reference"]),
            (
                "max abs diff",
                f"{result['max_abs_diff']:.3g} ({result['relative_diff']:.2e} of the output "
                f"scale {result['output_scale']:.3g})",
            ),
            ("cosine (min)", f"{result['cosine_min']:.6f}"),
            ("top-1 agreement", f"{100 * result['top1_agreement']:.1f}%"),
            ("passes when", result["tolerance"]),
        ]
    else:
        rows.append(("checked", result["reason"]))
    return "\n".join(lines + _aligned(rows))


def verify(args) -> int:
    from vslim.lite.errors import LiteError

    from ..config import ListConfig
    from ..inference import inspect_model
    from ..lite.optimizer import nb_header, nb_kernels, view_nb
    from ..lite.toolchain import find_toolchain
    from ..lite.verify import check_pair, structural, verification_clips, verify_x86

    nb = Path(args.nb)
    if not nb.is_file():
        raise LiteError(f".nb file {nb} does not exist")
    if args.clips < 1:
        raise LiteError(f"--clips must be >= 1, got {args.clips}")
    header = nb_header(nb)
    tc = find_toolchain(args.opt_bin)
    info = inspect_model(args.model_dir)
    pair = check_pair(tc, nb, info)
    found = "x86" if "x86" in pair["targets"] else "arm"
    if args.target and args.target != found:
        raise LiteError(
            f"{nb.name} holds {', '.join(pair['targets']) or 'no'} kernels, not {args.target} ones: "
            f"drop --target or give the {args.target} .nb"
        )
    target = args.target or found
    if target == "x86":
        clips, source = verification_clips(info, args.clips, ListConfig(args.val_list) if args.val_list else None)
        result = verify_x86(tc, nb, info, clips, source)
    else:
        result = structural(header, view_nb(tc, nb), nb_kernels(nb), info.quantized)
    answer = {
        "nb": str(nb),
        "model_dir": str(info.model_dir),
        "target": target,
        "header": header,
        **result,
        "pair": pair,
    }
    if args.json:
        print_json(answer)
    else:
        print(verify_text(answer))
    return 0 if result["passed"] else 1
