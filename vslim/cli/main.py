"""``vslim``: one command, many subcommands; ``vslim-quant``, ``vslim-package``, ``vslim-serve``,
``vslim-client`` and ``vslim-bench`` are aliases of them (docs/architecture.md, Shape of the system).

The CLI only parses flags and prints; the work is in library functions that the
tests call directly. A :class:`~vslim.errors.VslimError` is printed as one line
(``vslim: error: ...``) and exits non-zero; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Callable, Sequence

from .. import __version__
from ..errors import VslimError
from . import bench_cmd, data_cmd, demo_cmd, lite_cmd, model_cmd, package_cmd, quant_cmd, serving_cmd
from .parser import DefaultsHelpFormatter, VslimArgumentParser

COMMAND_MODULES = (demo_cmd, data_cmd, model_cmd, quant_cmd, package_cmd, serving_cmd, lite_cmd, bench_cmd)


DESCRIPTION = """\
Deploy a trained PaddlePaddle video classifier (PP-TSM and kin): INT8 by post-training quantization or
quantization-aware training, filter pruning, a Paddle Serving bundle served over gRPC and HTTP (Paddle Serving's
protocol and KServe v2) with Python and C++ clients, Ray Serve scale-out, Paddle Lite .nb files for ARM phones,
ONNX, and FP32-vs-INT8 benchmarks.

Start with `vslim demo`: the whole path on built-in synthetic data."""

EPILOG = """\
the path, step by step:
  vslim data synth --out data                          synthetic data set (PaddleVideo list files)
  vslim train --arch pptsm_small ...                   fine-tune a zoo model
  vslim export --weights W --out fp32                  Paddle inference model + vslim.json
  vslim compress ptq --model-dir fp32 --out int8 ...   INT8 (also: compress qat, compress prune)
  vslim package --target serving|lite|onnx ...         serving bundle, .nb files or ONNX
  vslim serve --bundle B_serving_server                serve it (vslim client ... to query it)
  vslim bench runtime|e2e|serving|soak|compare         measure

the same commands under their own names: vslim-quant (compress ptq), vslim-package (package),
vslim-serve (serve), vslim-client (client), vslim-bench (bench).
`vslim COMMAND --help` shows each command's flags and defaults."""


def build_parser(prog: str = "vslim") -> argparse.ArgumentParser:
    parser = VslimArgumentParser(
        prog=prog, description=DESCRIPTION, epilog=EPILOG, formatter_class=_RawDescriptionDefaults
    )
    parser.add_argument("--version", action="version", version=f"vslim {__version__}")
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    sub.required = True
    for module in COMMAND_MODULES:
        module.register(sub)
    return parser


class _RawDescriptionDefaults(argparse.RawDescriptionHelpFormatter, DefaultsHelpFormatter):
    """Keeps the top-level description's paragraphs and the epilog's table as written."""


def _subcommand(parser: argparse.ArgumentParser, *path: str) -> argparse.ArgumentParser:
    for name in path:
        action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = action.choices[name]
    return parser


def _quiet_libraries() -> None:
    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    os.environ.setdefault("GLOG_minloglevel", "2")
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # FFmpeg's raw lines; the readers' errors say it plainly


def run(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> int:
    args = parser.parse_args(argv)
    debug = getattr(args, "debug", False)
    from ..upstream import set_upstream_verbose

    set_upstream_verbose(debug)  # PaddleSlim's own logs and bars only with --debug
    if not debug:
        _quiet_libraries()
    handler: Callable = args.handler
    try:
        result = handler(args)
    except VslimError as exc:
        if debug:
            raise
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"{parser.prog}: interrupted; no partial output was kept", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `vslim lite doctor | head`: the reader left, nothing to report
        sys.stderr.close()
        return 0
    except Exception as exc:  # a bug, not bad input: say so briefly, the traceback is one flag away
        if debug:
            raise
        print(
            f"{parser.prog}: internal error: {type(exc).__name__}: {exc}\n"
            f"This is a bug in vslim or a library it drives, not in your input; rerun with --debug for the "
            "traceback and report it. Outputs are written atomically: nothing half-written was left under "
            "the output name.",
            file=sys.stderr,
        )
        return 1
    return int(result or 0)


def main(argv: Sequence[str] | None = None) -> int:
    return run(build_parser(), argv)


DEBUG_HELP = "show tracebacks, library warnings and the libraries' own logs"

# console script -> (module that configures it, path of the same command under `vslim`)
ALIASES = {
    "vslim-quant": (quant_cmd, ("compress", "ptq")),
    "vslim-package": (package_cmd, ("package",)),
    "vslim-serve": (serving_cmd, ("serve",)),
    "vslim-client": (serving_cmd, ("client",)),
}


def alias_parser(prog: str) -> argparse.ArgumentParser:
    """The parser of a console script that is one ``vslim`` subcommand under its own name (same description)."""
    if prog == "vslim-bench":
        return _bench_parser()
    module, path = ALIASES[prog]
    parser = VslimArgumentParser(prog=prog, description=_subcommand(build_parser(), *path).description)
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    module.configure(path[-1], parser)
    return parser


def _bench_parser() -> argparse.ArgumentParser:
    """``vslim-bench COMMAND``: the ``vslim bench`` group under its own name, listing the same commands."""
    group = _subcommand(build_parser(), "bench")
    parser = VslimArgumentParser(prog="vslim-bench", description=group.description)
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    sub = parser.add_subparsers(dest="bench_command", metavar="COMMAND", title="commands")
    sub.required = True
    for action in next(a for a in group._actions if isinstance(a, argparse._SubParsersAction))._choices_actions:
        sub_parser = sub.add_parser(
            action.dest, help=action.help, description=_subcommand(group, action.dest).description
        )
        bench_cmd.configure(action.dest, sub_parser)
    return parser


def quant_main(argv: Sequence[str] | None = None) -> int:
    return run(alias_parser("vslim-quant"), argv)


def package_main(argv: Sequence[str] | None = None) -> int:
    return run(alias_parser("vslim-package"), argv)


def serve_main(argv: Sequence[str] | None = None) -> int:
    return run(alias_parser("vslim-serve"), argv)


def client_main(argv: Sequence[str] | None = None) -> int:
    return run(alias_parser("vslim-client"), argv)


def bench_main(argv: Sequence[str] | None = None) -> int:
    return run(alias_parser("vslim-bench"), argv)


if __name__ == "__main__":
    sys.exit(main())
