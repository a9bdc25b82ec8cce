"""Paddle Lite: the real optimizer (Python 3.9 toolchain), real .nb files, x86 runs against Paddle."""

import json
import re
import shutil

import numpy as np
import paddle
import pytest

from vslim.config import ListConfig, PredictorConfig
from vslim.dy2static import forget_failed_traces
from vslim.inference import PaddlePredictor, inspect_model
from vslim.lite.config import LiteConfig

pytestmark = pytest.mark.slow


def _package(model_dir, out, targets, synth_data=None, **kwargs):
    from vslim.lite.package import package_lite

    val = ListConfig(str(synth_data / "val.list")) if synth_data is not None else None
    return package_lite(
        LiteConfig(model_dir=str(model_dir), output_dir=str(out), targets=targets, val=val, **kwargs),
        say=lambda _: None,
    )


@pytest.fixture(scope="session")
def paddlevideo_r50(r50_fp32, tmp_path_factory):
    """A PP-TSM R50 inference model laid out as PaddleVideo's export writes it: ppTSM.*, no vslim.json."""
    folder = tmp_path_factory.mktemp("pv") / "ppTSM"
    folder.mkdir()
    shutil.copy(r50_fp32 / "model.pdmodel", folder / "ppTSM.pdmodel")
    shutil.copy(r50_fp32 / "model.pdiparams", folder / "ppTSM.pdiparams")
    return folder


def test_doctor_finds_the_toolchain(toolchain):
    from vslim.lite.toolchain import doctor

    report = doctor()
    assert report["found"] and report["optimizer_version"].startswith("v2.13")
    assert report["can_run_nb"] is True


def test_rewrite_is_exact_in_paddle(fp32_small, tmp_path):
    from vslim.inference.temporal_shift import find_temporal_shifts, rewrite_temporal_shift

    shifts = find_temporal_shifts(fp32_small / "model.pdmodel")
    assert [s.shift_ratio for s in shifts] == [0.125] * 4 and all(s.seg_num == 8 for s in shifts)
    result = rewrite_temporal_shift(fp32_small / "model.pdmodel", fp32_small / "model.pdiparams", tmp_path / "rw")
    assert result.rewritten == 4 and find_temporal_shifts(tmp_path / "rw" / "model.pdmodel") == []
    x = np.random.default_rng(0).standard_normal((3, 8, 3, 64, 64)).astype(np.float32)
    plain = PredictorConfig(use_onednn=False)
    np.testing.assert_array_equal(
        PaddlePredictor(tmp_path / "rw", plain).run(x), PaddlePredictor(fp32_small, plain).run(x)
    )


def test_small_pptsm_fp32_arm_and_verified_x86(toolchain, fp32_small, synth_data, tmp_path):
    out = tmp_path / "lite"
    report = _package(fp32_small, out, ["arm", "x86"], synth_data)
    assert sorted(p.name for p in out.iterdir()) == [
        "lite_report.json",
        "lite_report.md",
        "pptsm_small_arm.nb",
        "pptsm_small_x86.nb",
    ]
    assert json.loads((out / "lite_report.json").read_text()) == json.loads(json.dumps(report))
    ts = report["temporal_shift"]
    assert ts["found"] == 4 and ts["rewritten"] == 4 and ts["shift_ratios"] == [0.125]
    assert all(ts["lite_support"][t] for t in ("arm", "x86"))  # Lite claims support: the trap
    x86 = report["targets"]["x86"]["verification"]
    assert x86["ran"] and x86["passed"] and x86["clips"] == 16 and x86["top1_agreement"] == 1.0
    assert x86["relative_diff"] <= 1e-4 and "val.list" in x86["clips_source"]
    arm = report["targets"]["arm"]
    assert arm["verification"]["kind"] == "structural" and arm["verification"]["ran"] is False
    assert arm["header"]["optimizer_version"].startswith("v2.13") and arm["viewer"]["loaded"]
    assert arm["kernels"]["int8_kernels"] == 0 and any(k.startswith("conv2d/") for k in arm["kernels"]["kernels"])
    md = (out / "lite_report.md").read_text()
    assert "rewritten into reshape2, slice, scale and concat" in md and "not run (ARM)" in md


def test_small_pptsm_int8_arm_lists_int8_kernels(toolchain, int8_small_avg, tmp_path):
    report = _package(int8_small_avg.output_dir, tmp_path / "lite", ["arm"])
    arm = report["targets"]["arm"]
    assert report["precision"] == "int8"
    assert arm["kernels"]["int8_kernels"] >= 10
    assert any("(arm, int8)" in k and k.startswith("conv2d/") for k in arm["kernels"]["kernels"])
    assert arm["viewer"]["calib_ops"] > 0 and arm["verification"]["passed"]
    assert arm["op_support"]["ops"]["quantize_linear"] == ["folded by quantization passes"]


def test_without_the_rewrite_the_x86_nb_is_wrong(toolchain, fp32_small, synth_data, tmp_path):
    """If upstream ever fixes temporal_shift, this test notices (and the rewrite can go)."""
    from vslim.lite.verify import verification_clips, verify_x86

    report = _package(fp32_small, tmp_path / "raw", ["x86"], rewrite_temporal_shift=False, verify=False)
    assert report["temporal_shift"]["rewritten"] == 0 and "WARNING" in report["temporal_shift"]["note"]
    info = inspect_model(fp32_small)
    clips, source = verification_clips(info, 16, ListConfig(str(synth_data / "val.list")))
    result = verify_x86(toolchain, tmp_path / "raw" / "pptsm_small_x86.nb", info, clips, source)
    assert not result["passed"] and result["relative_diff"] > 0.05, result


def test_paddlevideo_pptsm_r50_fp32_and_int8(toolchain, paddlevideo_r50, r50_int8, synth_data, tmp_path):
    fp32 = _package(paddlevideo_r50, tmp_path / "fp32", ["arm", "x86"], synth_data)
    assert fp32["name"] == "ppTSM" and fp32["temporal_shift"]["rewritten"] == 16
    v = fp32["targets"]["x86"]["verification"]
    assert v["passed"] and v["clips"] == 16 and v["relative_diff"] <= 1e-4 and v["top1_agreement"] == 1.0
    assert (tmp_path / "fp32" / "ppTSM_arm.nb").stat().st_size > 50 << 20
    int8 = _package(r50_int8.output_dir, tmp_path / "int8", ["arm"])
    assert int8["targets"]["arm"]["kernels"]["int8_kernels"] >= 50


# --------------------------------------------------------------------------- bad input


class _Erfinv(paddle.nn.Layer):
    def __init__(self):
        super().__init__()
        self.conv = paddle.nn.Conv2D(3, 4, 3)

    def forward(self, x):
        return paddle.erfinv(paddle.tanh(self.conv(x)) * 0.5).mean(axis=[2, 3])


class _Flatten(paddle.nn.Layer):
    def __init__(self):
        super().__init__()
        self.conv = paddle.nn.Conv2D(3, 4, 3)

    def forward(self, x):
        return paddle.flatten(self.conv(x), 1)


class _Tiny(paddle.nn.Layer):
    def __init__(self):
        super().__init__()
        self.conv = paddle.nn.Conv2D(3, 4, 3)

    def forward(self, x):
        return paddle.nn.functional.relu(self.conv(x)).mean(axis=[2, 3])


def _save(layer, folder):
    layer.eval()
    spec = [paddle.static.InputSpec([None, 3, 16, 16], "float32", "x")]
    static = paddle.jit.to_static(layer, input_spec=spec, full_graph=True)
    forget_failed_traces()  # earlier tests in this process may have left failed conversions behind
    paddle.jit.save(static, str(folder / "model"))
    return folder


def test_unsupported_op_is_named_and_nothing_is_written(toolchain, tmp_path, cli):
    model = _save(_Erfinv(), tmp_path / "erfinv")
    out = tmp_path / "out"
    r = cli("package", "--target", "lite", "--model-dir", model, "--out", out, "--valid-targets", "arm", "x86")
    assert r.code == 2 and "does not support these ops" in r.err and "arm: erfinv" in r.err and "x86: erfinv" in r.err
    assert not out.exists()


def test_x86_flatten_crash_becomes_a_clear_error(toolchain, tmp_path, cli):
    model = _save(_Flatten(), tmp_path / "flatten")
    out = tmp_path / "out"
    r = cli("package", "--target", "lite", "--model-dir", model, "--out", out, "--valid-targets", "x86")
    assert r.code == 2 and "crashed" in r.err and "flatten_contiguous_range" in r.err and "paddle.reshape" in r.err
    assert not out.exists() and [p.name for p in tmp_path.iterdir()] == ["flatten"]


def test_lite_bad_input(toolchain, fp32_small, int8_small_avg, tmp_path, cli, monkeypatch):
    r = cli(
        "package", "--target", "lite", "--model-dir", fp32_small, "--out", tmp_path / "o", "--valid-targets", "mips"
    )
    assert r.code == 2 and "unknown Lite target 'mips'" in r.err
    (tmp_path / "exists").mkdir()
    r = cli("package", "--target", "lite", "--model-dir", fp32_small, "--out", tmp_path / "exists")
    assert r.code == 2 and "already exists" in r.err
    r = cli(
        "package",
        "--target",
        "lite",
        "--model-dir",
        int8_small_avg.output_dir,
        "--out",
        tmp_path / "i8",
        "--valid-targets",
        "x86",
    )
    assert r.code == 2 and "disagrees with Paddle Inference" in r.err and "build INT8 models for arm" in r.err
    assert not (tmp_path / "i8").exists()
    monkeypatch.setenv("VSLIM_HOME", str(tmp_path / "empty-home"))
    monkeypatch.delenv("VSLIM_LITE_OPT", raising=False)
    r = cli("package", "--target", "lite", "--model-dir", fp32_small, "--out", tmp_path / "o2")
    assert r.code == 2 and "no Paddle Lite optimizer found" in r.err and "vslim lite setup" in r.err
    r = cli("lite", "doctor")
    assert r.code == 2 and r.out.startswith("Paddle Lite optimizer: NOT FOUND") and "vslim lite setup" in r.out
    assert "3. vslim toolchain" in r.out and "(not installed)" in r.out
    r = cli("lite", "doctor", "--json")
    assert r.code == 2 and json.loads(r.out)["found"] is False
    r = cli(
        "package",
        "--target",
        "lite",
        "--model-dir",
        fp32_small,
        "--out",
        tmp_path / "o3",
        "--opt-bin",
        tmp_path / "nope",
    )
    assert r.code == 2 and "does not exist" in r.err


def test_lite_doctor_reads_as_text(toolchain, cli):
    r = cli("lite", "doctor")
    assert r.code == 0 and r.out.startswith("Paddle Lite optimizer: found"), r.out
    assert re.search(r"^  optimizer version +v2\.13", r.out, re.MULTILINE) and "looked in, in this order:" in r.out
    r = cli("lite", "doctor", "--json")
    assert r.code == 0 and json.loads(r.out)["optimizer_version"].startswith("v2.13")


def test_lite_verify_command(toolchain, fp32_small, synth_data, tmp_path, cli):
    _package(fp32_small, tmp_path / "lite", ["arm", "x86"], synth_data, verify=False)
    x86 = tmp_path / "lite" / "pptsm_small_x86.nb"
    r = cli(
        "lite",
        "verify",
        "--nb",
        x86,
        "--model-dir",
        fp32_small,
        "--val-list",
        synth_data / "val.list",
        "--clips",
        4,
        "--json",
    )
    assert r.code == 0, r.err
    answer = json.loads(r.out)
    assert answer["passed"] and answer["kind"] == "numeric" and answer["target"] == "x86"
    assert answer["pair"]["match"] == "identical" and answer["pair"]["nb_precision"] == "fp32"
    r = cli("lite", "verify", "--nb", x86, "--model-dir", fp32_small, "--clips", 4)
    assert r.code == 0 and r.out.startswith("pptsm_small_x86.nb: PASSED (x86, ran against Paddle Inference)"), r.out
    assert re.search(r"^  top-1 agreement +100\.0%$", r.out, re.MULTILINE) and "identical to a fresh" in r.out
    r = cli("lite", "verify", "--nb", tmp_path / "lite" / "pptsm_small_arm.nb", "--model-dir", fp32_small, "--json")
    answer = json.loads(r.out)
    assert r.code == 0 and answer["kind"] == "structural" and answer["ran"] is False and answer["target"] == "arm"
    r = cli("lite", "verify", "--nb", tmp_path / "lite" / "pptsm_small_arm.nb", "--model-dir", fp32_small)
    assert r.code == 0 and r.out.startswith("pptsm_small_arm.nb: PASSED (arm, structural check)"), r.out
    r = cli("lite", "verify", "--nb", x86, "--model-dir", fp32_small, "--target", "arm")
    assert r.code == 2 and "holds x86 kernels, not arm ones" in r.err


def test_lite_verify_refuses_a_mismatched_pair(toolchain, fp32_small, int8_small_avg, int8_small_hist, tmp_path, cli):
    """An INT8 .nb checked against the FP32 model used to pass the structural check: a wrong answer."""
    _package(fp32_small, tmp_path / "fp32", ["arm"], verify=False)
    _package(int8_small_avg.output_dir, tmp_path / "int8", ["arm"])
    nb8, nb32 = tmp_path / "int8" / "pptsm_small_arm.nb", tmp_path / "fp32" / "pptsm_small_arm.nb"
    r = cli("lite", "verify", "--nb", nb8, "--model-dir", fp32_small)
    assert r.code == 2 and "are not a pair" in r.err and "holds an INT8 program" in r.err, r.err
    assert "the model is FP32 (no quantize ops in model.pdmodel)" in r.err and not r.out
    r = cli("lite", "verify", "--nb", nb32, "--model-dir", int8_small_avg.output_dir)
    assert r.code == 2 and "holds an FP32 program" in r.err and "the model is INT8" in r.err, r.err
    # same precision, same architecture, other calibration: the weights give it away
    r = cli("lite", "verify", "--nb", nb8, "--model-dir", int8_small_hist.output_dir)
    assert r.code == 2 and "was not made from" in r.err, r.err
    # another program altogether
    other = _save(_Tiny(), tmp_path / "tiny")
    r = cli("lite", "verify", "--nb", nb32, "--model-dir", other)
    assert r.code == 2 and "gives a different graph" in r.err and "kernel counts" in r.err, r.err
    # from another optimizer version the bytes cannot be compared: the answer says so instead of a bare pass
    older = tmp_path / "older_arm.nb"
    data = nb8.read_bytes()
    older.write_bytes(data[:2] + b"v2.12".ljust(16, b"\0") + data[18:])
    r = cli("lite", "verify", "--nb", older, "--model-dir", int8_small_hist.output_dir)
    assert r.code == 0 and "weights not confirmed" in r.out and "written by optimizer v2.12" in r.out, r.out
    r = cli("lite", "verify", "--nb", nb8, "--model-dir", int8_small_avg.output_dir, "--json")
    answer = json.loads(r.out)
    assert r.code == 0 and answer["passed"] and answer["pair"]["match"] == "identical", r.err
    assert [c.split(":")[0] for c in answer["pair"]["compared"]] == ["precision", "program", "bytes"]


def test_lite_verify_infers_the_optimizer_options(toolchain, fp32_small, tmp_path, cli):
    """A weight-only quantized .nb is byte-identical to a fresh optimization with the same options: read from
    lite_report.json beside it, or inferred from the .nb alone."""
    _package(fp32_small, tmp_path / "wq", ["arm"], quant_type="int16")
    lone = tmp_path / "lone_arm.nb"
    data = (tmp_path / "wq" / "pptsm_small_arm.nb").read_bytes()
    lone.write_bytes(data)
    r = cli("lite", "verify", "--nb", tmp_path / "wq" / "pptsm_small_arm.nb", "--model-dir", fp32_small, "--json")
    pair = json.loads(r.out)["pair"]
    assert r.code == 0 and pair["match"] == "identical" and pair["options"]["quant_type"] == "int16"
    assert pair["options_source"] == "recorded in lite_report.json beside it"
    r = cli("lite", "verify", "--nb", lone, "--model-dir", fp32_small, "--json")
    pair = json.loads(r.out)["pair"]
    assert r.code == 0 and pair["match"] == "identical" and pair["options"]["quant_type"] == "int16", pair
    assert pair["options_source"] == "inferred from the .nb"
