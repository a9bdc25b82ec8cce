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
from typing import Callable, Optional, Sequence

from .. import __version__
from ..errors import VslimError
from . import bench_cmd, data_cmd, demo_cmd, lite_cmd, model_cmd, quant_cmd, serving_cmd

COMMAND_MODULES = (data_cmd, model_cmd, quant_cmd, serving_cmd, lite_cmd, bench_cmd, demo_cmd)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vslim",
        description="Deploy PaddlePaddle video classifiers: INT8, Paddle Serving, Paddle Lite, benchmarks.",
    )
    parser.add_argument("--version", action="version", version=f"vslim {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and library warnings")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for module in COMMAND_MODULES:
        module.register(sub)
    return parser


def _quiet_libraries() -> None:
    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    os.environ.setdefault("GLOG_minloglevel", "2")


def run(parser: argparse.ArgumentParser, argv: Optional[Sequence[str]]) -> int:
    args = parser.parse_args(argv)
    debug = getattr(args, "debug", False)
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
        print(f"{parser.prog}: internal error: {type(exc).__name__}: {exc}\n"
              f"This is a bug in vslim or a library it drives, not in your input; rerun with --debug for the "
              "traceback and report it. Outputs are written atomically: nothing half-written was left under "
              "the output name.", file=sys.stderr)
        return 1
    return int(result or 0)


def main(argv: Optional[Sequence[str]] = None) -> int:
    return run(build_parser(), argv)


def _alias(prog: str, module, command: str) -> Callable[[Optional[Sequence[str]]], int]:
    """A console script that is one subcommand of ``vslim`` under its own name."""

    def entry(argv: Optional[Sequence[str]] = None) -> int:
        parser = argparse.ArgumentParser(prog=prog)
        parser.add_argument("--debug", action="store_true", help="show tracebacks and library warnings")
        module.configure(command, parser)
        return run(parser, argv)

    return entry


quant_main = _alias("vslim-quant", quant_cmd, "ptq")
package_main = _alias("vslim-package", serving_cmd, "package")
serve_main = _alias("vslim-serve", serving_cmd, "serve")
client_main = _alias("vslim-client", serving_cmd, "client")


def bench_main(argv: Optional[Sequence[str]] = None) -> int:
    """``vslim-bench SUBCOMMAND``: the ``vslim bench`` group under its own name."""
    parser = argparse.ArgumentParser(prog="vslim-bench", description="vslim benchmarks")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and library warnings")
    sub = parser.add_subparsers(dest="bench_command", metavar="COMMAND")
    sub.required = True
    for name in ("runtime", "e2e", "serving", "soak", "compare"):
        bench_cmd.configure(name, sub.add_parser(name))
    return run(parser, argv)


if __name__ == "__main__":
    sys.exit(main())
