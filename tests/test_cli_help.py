"""Every entry point explains itself: a description, its subcommands listed, defaults shown, typos answered.

The parsers are walked, not listed by hand, so a command added later is held to
the same rule without anyone remembering to add it here.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from vslim.cli.main import ALIASES, alias_parser, build_parser

BIN = Path(sys.executable).parent
ENTRY_POINTS = ["vslim", *ALIASES, "vslim-bench"]


def _parser(prog: str) -> argparse.ArgumentParser:
    return build_parser() if prog == "vslim" else alias_parser(prog)


def _subparsers(parser: argparse.ArgumentParser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    return None


def _walk(parser: argparse.ArgumentParser):
    yield parser
    sub = _subparsers(parser)
    if sub is not None:
        for child in dict.fromkeys(sub.choices.values()):
            yield from _walk(child)


def _all_parsers():
    for prog in ENTRY_POINTS:
        yield from _walk(_parser(prog))


def _says_default(action: argparse.Action, parser: argparse.ArgumentParser) -> bool:
    return "default" in parser._get_formatter()._expand_help(action).lower()


def test_every_parser_has_a_description_without_docstring_markup():
    for parser in _all_parsers():
        assert parser.description and parser.description.strip(), f"{parser.prog} has no description"
        for markup in ("``", ":class:", ":func:", ":data:"):
            assert markup not in parser.description, f"{parser.prog}'s description shows {markup!r} markup"


def test_groups_list_their_subcommands_with_help():
    for parser in _all_parsers():
        sub = _subparsers(parser)
        if sub is None:
            continue
        text = parser.format_help()
        for choice in sub._choices_actions:
            assert choice.help, f"{parser.prog} {choice.dest} has no one-line help"
            assert choice.dest in text, f"{parser.prog} --help does not list {choice.dest}"


def test_options_with_defaults_show_them():
    missing = []
    for parser in _all_parsers():
        for action in parser._actions:
            if not action.option_strings or action.help == argparse.SUPPRESS:
                continue
            if action.default is None or action.default is False or action.default == argparse.SUPPRESS:
                continue
            if isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
                continue
            if not _says_default(action, parser):
                missing.append(f"{parser.prog} {'/'.join(action.option_strings)}")
    assert not missing, "options whose help hides their default: " + ", ".join(missing)


@pytest.mark.parametrize("prog", ENTRY_POINTS)
def test_installed_entry_points_print_help(prog):
    r = subprocess.run([str(BIN / prog), "--help"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"usage: {prog}")
    assert _parser(prog).description.split()[0] in r.stdout


@pytest.mark.parametrize(
    "argv, suggestion",
    [
        (["vslim", "serv"], "did you mean 'serve'?"),
        (["vslim", "compress", "ptqq"], "did you mean 'ptq'?"),
        (["vslim-bench", "runtim"], "did you mean 'runtime'?"),
    ],
)
def test_a_mistyped_command_gets_a_suggestion(argv, suggestion):
    r = subprocess.run([str(BIN / argv[0]), *argv[1:]], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and suggestion in r.stderr, r.stderr


def test_a_word_nothing_like_a_command_gets_the_list_only():
    r = subprocess.run([str(BIN / "vslim"), "xyzzy"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "invalid choice: 'xyzzy'" in r.stderr and "did you mean" not in r.stderr
