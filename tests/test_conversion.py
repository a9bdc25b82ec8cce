"""The ONNX conversion: its cache, and the rewrite of paddle2onnx's temporal shifts into 4-D ops (same outputs,
every runtime, any batch). One plain and one rewritten conversion of the small PP-TSM serve every test."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def conversions(fp32_small, tmp_path_factory):
    from vslim.inference.conversion import converted_onnx
    from vslim.inference.model_info import inspect_model

    info = inspect_model(fp32_small)
    cache = tmp_path_factory.mktemp("converted")
    return info, converted_onnx(info, cache, plain=True), converted_onnx(info, cache)


def _clips(info, batch: int) -> np.ndarray:
    shape = [batch, *[d if d > 0 else 1 for d in info.inputs[0].shape[1:]]]
    return np.random.default_rng(7).standard_normal(shape).astype("float32")


def _ort(path, x: np.ndarray) -> np.ndarray:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # the graphs as written
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def test_every_shift_is_rewritten_and_the_outputs_are_identical_for_any_batch(conversions):
    from vslim.inference.conversion import REPORT_FILE

    info, plain, ours = conversions
    report = json.loads((ours.parent / REPORT_FILE).read_text())
    assert report["graph_rewrites"]["temporal_shift"] == 4  # the small PP-TSM's four shifts
    assert "graph_rewrites" not in json.loads((plain.parent / REPORT_FILE).read_text())
    before = Counter(n.op_type for n in onnx.load(str(plain)).graph.node)
    after = onnx.load(str(ours)).graph
    assert before["Pad"] == 4 and Counter(n.op_type for n in after.node)["Pad"] == 0
    five_d = [
        n
        for n in after.node
        if n.op_type == "Constant" and len(n.attribute[0].t.dims) == 1 and n.attribute[0].t.dims[0] == 5
    ]
    assert not five_d, "no 5-D reshape shape is left, not even unused"
    # batch 3: rows of three clips follow each other, so a wrong mask would borrow a frame across clips
    for batch in (1, 3):
        x = _clips(info, batch)
        np.testing.assert_array_equal(_ort(ours, x), _ort(plain, x))
    # one clip's answer does not depend on its neighbours in the batch (to the kernels' batch-size rounding)
    x = _clips(info, 3)
    np.testing.assert_allclose(_ort(ours, x)[1:2], _ort(ours, x[1:2]), rtol=1e-5, atol=1e-5)


def test_openvino_runs_the_rewritten_graph_to_the_same_answer(conversions):
    ov = pytest.importorskip("openvino")
    info, plain, ours = conversions
    x = _clips(info, 2)
    core = ov.Core()
    got = {
        p: core.compile_model(str(p), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        .create_infer_request()
        .infer({0: x})[0]
        for p in (plain, ours)
    }
    np.testing.assert_allclose(got[ours], got[plain], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got[ours], _ort(plain, x), rtol=1e-4, atol=1e-5)


def test_a_shift_that_differs_from_paddle2onnx_s_pattern_is_left_as_it_is(conversions, tmp_path):
    from vslim.inference.onnx_shift import rewrite_temporal_shifts

    info, plain, _ = conversions
    changed = onnx.load(str(plain))
    pad = next(n for n in changed.graph.node if n.op_type == "Pad")
    pad.attribute.append(onnx.helper.make_attribute("mode", "reflect"))  # not a zero pad: another meaning
    onnx.save(changed, str(tmp_path / "changed.onnx"))
    assert rewrite_temporal_shifts(changed) == 3
    assert Counter(n.op_type for n in changed.graph.node)["Pad"] == 1
    onnx.checker.check_model(changed)
    onnx.save(changed, str(tmp_path / "rewritten.onnx"))
    x = _clips(info, 2)
    np.testing.assert_array_equal(_ort(tmp_path / "rewritten.onnx", x), _ort(tmp_path / "changed.onnx", x))


def test_a_home_cache_conversion_from_before_the_rewrite_is_redone_and_a_bundle_s_is_kept(
    conversions, tmp_path, monkeypatch
):
    from vslim.inference.conversion import REPORT_FILE, converted_onnx

    info, _, ours = conversions
    monkeypatch.setenv("VSLIM_HOME", str(tmp_path / "home"))
    bundle = tmp_path / "bundle_converted"
    for cache in (None, bundle):  # plant a conversion as an older vslim left it: no graph_rewrites
        folder = (cache or tmp_path / "home" / "converted") / ours.parent.name
        folder.mkdir(parents=True)
        report = json.loads((ours.parent / REPORT_FILE).read_text())
        del report["graph_rewrites"]
        (folder / ours.name).write_bytes(ours.read_bytes())
        (folder / REPORT_FILE).write_text(json.dumps(report))
    again = converted_onnx(info)
    assert json.loads((again.parent / REPORT_FILE).read_text())["graph_rewrites"]["temporal_shift"] == 4
    kept = converted_onnx(info, bundle)
    assert "graph_rewrites" not in json.loads((kept.parent / REPORT_FILE).read_text())


def test_a_damaged_cached_conversion_is_refused(conversions, tmp_path):
    import shutil

    from vslim.errors import ModelError
    from vslim.inference.conversion import converted_onnx

    info, _, ours = conversions
    shutil.copytree(ours.parent, tmp_path / ours.parent.name)
    onnx_file = tmp_path / ours.parent.name / ours.name
    data = bytearray(onnx_file.read_bytes())
    data[len(data) // 2] ^= 0xFF
    onnx_file.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="does not match its checksum.*delete"):
        converted_onnx(info, tmp_path)
