"""The compression tools speak with one voice and explain their figures.

Upstream output is checked in a subprocess, as a user sees it: PaddleSlim's loggers
keep the stderr they found when first imported, so inside a pytest process their
lines could land in an old capture buffer and a "no INFO lines" assertion would pass
without proving anything.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import re
import sys

import pytest
from conftest import run_script

UPSTREAM_LOG = re.compile(r"^\w{3} \w{3} +\d+ [\d:]+-(INFO|WARNING): ", re.MULTILINE)  # PaddleSlim's log format
UPSTREAM_BARS = ("Sampling stage", "Adding quant op", "Adding quant activation op")


@pytest.mark.slow
def test_ptq_prints_only_vslim_lines_unless_debug(fp32_small, synth_data, tmp_path):
    args = ["--model-dir", fp32_small, "--calib-list", synth_data / "calib.list", "--algo", "avg", "--no-latency"]
    quiet = run_script("vslim-quant", *args, "--out", tmp_path / "quiet")
    assert quiet.code == 0, quiet.err
    both = quiet.out + quiet.err
    assert not UPSTREAM_LOG.search(both), both
    assert not any(bar in both for bar in UPSTREAM_BARS), both
    assert "Setuptools" not in both and "UserWarning" not in both, both
    # vslim's own lines are all that is left on stderr, the report on stdout
    assert quiet.err.splitlines() == [
        f"quantizing {fp32_small} -> {tmp_path / 'quiet'} (algo avg)",
        f"INT8 model written to {tmp_path / 'quiet'}",
    ], quiet.err
    assert quiet.out.startswith("# Post-training quantization report")

    loud = run_script("vslim-quant", "--debug", *args, "--out", tmp_path / "loud")
    assert loud.code == 0, loud.err
    assert UPSTREAM_LOG.search(loud.err) and "Collect quantized variable names" in loud.err, loud.err
    assert "Sampling stage" in loud.err
    assert f"INT8 model written to {tmp_path / 'loud'}" in loud.err


@pytest.mark.slow
def test_qat_prints_only_vslim_lines(trained_small, synth_data, tmp_path):
    r = run_script(
        "vslim",
        "compress",
        "qat",
        "--weights",
        trained_small.output_dir / "model.pdparams",
        "--train-list",
        synth_data / "train.list",
        "--val-list",
        synth_data / "val.list",
        "--out",
        tmp_path / "qat",
        "--epochs",
        "1",
    )
    assert r.code == 0, r.err
    assert not UPSTREAM_LOG.search(r.out + r.err), r.err
    assert "Warning" not in r.err, r.err
    assert r.err.splitlines()[0].startswith("QAT of pptsm_small: 1 epochs"), r.err
    assert "| INT8 (QAT)" in r.out


def test_quiet_upstream_restores_what_it_changed(capsys):
    import paddle.static.quantization.post_training_quantization as ptq_module
    import tqdm

    from vslim.upstream import quiet_upstream, set_upstream_verbose

    logger = ptq_module._logger
    level, out, err = logger.level, sys.stdout, sys.stderr
    assert ptq_module.tqdm is tqdm.tqdm
    with quiet_upstream("paddleslim.quant"):
        assert logger.level == logging.ERROR and ptq_module.tqdm is not tqdm.tqdm
        assert ptq_module.tqdm(range(3), desc="upstream bar").disable
        print("vslim's own line")
    assert (logger.level, sys.stdout, sys.stderr, ptq_module.tqdm) == (level, out, err, tqdm.tqdm)
    assert capsys.readouterr().out == "vslim's own line\n"
    set_upstream_verbose(True)
    try:
        with quiet_upstream("paddleslim.quant"):
            assert logger.level == level and ptq_module.tqdm is tqdm.tqdm and sys.stdout is out
    finally:
        set_upstream_verbose(False)


# --------------------------------------------------------------------------- reports


@pytest.mark.slow
def test_ptq_report_names_the_op_set_and_says_why_int8_is_not_faster(int8_small_avg):
    from vslim.compress.compression_report import ptq_markdown

    report = json.loads((int8_small_avg.output_dir / "ptq_report.json").read_text())
    assert report["int8"]["quant_dequant_ops"] > 0
    lat = report["latency_ms"]
    md = (int8_small_avg.output_dir / "ptq_report.md").read_text()
    # the note follows the measured numbers, whichever way they went on this machine
    if lat["int8"] < lat["fp32"]:
        assert f"INT8 runs {lat['fp32'] / lat['int8']:.2f}x faster than FP32" in md
    else:
        assert "INT8 is not faster than FP32 on this model" in md and "Likely cause" in md
    assert report["int8_speed_note"] in md

    everything = copy.deepcopy(report)
    everything["int8"]["onednn_int8_ops"] = ["*"]
    assert "oneDNN INT8 ops: all ops oneDNN can quantize" in ptq_markdown(everything)
    assert "ops: *" not in ptq_markdown(everything)
    report["int8"]["onednn_int8_ops"] = ["fused_conv2d"]
    assert "oneDNN INT8 ops: fused_conv2d (convolutions only)" in ptq_markdown(report)

    slower = copy.deepcopy(report)
    slower["latency_ms"].update(fp32=1.33, int8=1.44, cpu_int8_instructions=["avx512_vnni"])
    md = ptq_markdown(slower)
    assert "INT8 is not faster than FP32 on this model: measured 1.44 ms vs 1.33 ms (batch 1, 2 threads" in md
    assert "Likely cause: the model is small (" in md
    assert f"the {report['int8']['quant_dequant_ops']} quantize/dequantize ops INT8 adds" in md
    no_vnni = copy.deepcopy(slower)
    no_vnni["latency_ms"]["cpu_int8_instructions"] = []
    assert "this CPU has no VNNI or AMX instructions" in ptq_markdown(no_vnni)
    faster = copy.deepcopy(report)
    faster["latency_ms"].update(fp32=3.0, int8=1.0)
    assert "INT8 runs 3.00x faster than FP32 (batch 1, 2 threads)." in ptq_markdown(faster)
    assert "not faster" not in ptq_markdown(faster)


# --------------------------------------------------------------------------- help


def _group(*path: str) -> argparse.ArgumentParser:
    from vslim.cli.main import build_parser

    parser = build_parser()
    for name in path:
        parser = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[name]
    return parser


def _children(parser: argparse.ArgumentParser) -> dict:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {c.dest: (c.help, action.choices[c.dest]) for c in action._choices_actions}


@pytest.mark.parametrize("group", ["compress", "lite", "bench"])
def test_help_is_plain_text_and_shows_defaults(group):
    for name, (one_line, parser) in _children(_group(group)).items():
        assert one_line, f"vslim {group} {name} has no one-line help"
        text = parser.format_help()
        assert parser.description and len(parser.description) > len(one_line), f"vslim {group} {name}"
        for markup in ("``", ":class:", ":func:", ":data:"):
            assert markup not in text, f"vslim {group} {name} --help shows {markup!r}"
        for action in parser._actions:
            if (
                not action.option_strings
                or action.help == argparse.SUPPRESS
                or isinstance(action, argparse._HelpAction)
            ):
                continue
            shown = parser._get_formatter()._expand_help(action)
            assert shown, f"vslim {group} {name} {action.option_strings[0]} has no help"
            if action.default not in (None, False) or action.choices:
                assert "default" in shown.lower() or action.choices, (group, name, action.option_strings, shown)


def test_bench_commands_table_is_what_the_group_lists():
    from vslim.cli import bench_cmd

    children = _children(_group("bench"))
    assert {name: help for name, (help, _) in children.items()} == bench_cmd.COMMANDS
    serving = children["serving"][1].format_help()
    assert "http: Paddle Serving HTTP, JSON body" in " ".join(serving.split())
    assert "(default: 1,2,4,8,16)" in serving


def test_ptq_help_shows_the_config_defaults():
    from vslim.compress.config import PTQConfig

    text = " ".join(_group("compress", "ptq").format_help().split())
    assert f"(default: {PTQConfig.algo}; KL for PaddleVideo YAML)" in text
    assert "(default: avg,abs_max,hist,mse)" in text and "KL, hist, mse, avg, abs_max, or auto" in text
    qat = " ".join(_group("compress", "qat").format_help().split())
    assert "1/3 of the weights' training epochs, at least 2" in qat and "(default: 0.5)" in qat
