"""CPU runtimes beside Paddle Inference (OpenVINO, ONNX Runtime, BF16): same answers, served, refused clearly."""

import json
import re
import urllib.request

import numpy as np
import pytest
from servers import ServerProcess

from vslim.accuracy import cosine_similarity
from vslim.config import PredictorConfig
from vslim.errors import ConfigError, ModelError
from vslim.inference import PaddlePredictor
from vslim.inference.cpu import VNNI_FLAGS, cpu_flags, has_bf16
from vslim.inference.runtimes import check_precision, open_predictor
from vslim.serving.client import ClientConfig, make_client

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def own_cache(tmp_path_factory, monkeypatch):
    """Conversions go to this session's cache, not the user's."""
    monkeypatch.setenv("VSLIM_HOME", str(tmp_path_factory.getbasetemp() / "vslim-home"))


COMBOS = [
    ("paddle", "bf16", "fp32"),
    ("openvino", "fp32", "fp32"),
    ("openvino", "bf16", "fp32"),
    ("onnxruntime", "fp32", "fp32"),
    ("paddle", "int8", "int8"),
    ("onnxruntime", "int8", "int8"),
]


def has_vnni() -> bool:
    return bool(cpu_flags() & set(VNNI_FLAGS))


def open_or_refused_for_the_isa(folder, runtime, precision):
    """ONNX Runtime's INT8 on a CPU without VNNI may lose precision (measured on an AVX2-only host): there the
    predictor is either right or refused naming that cause; with VNNI it must be right."""
    try:
        return open_predictor(folder, PredictorConfig(runtime=runtime, precision=precision))
    except ModelError as exc:
        if runtime == "onnxruntime" and precision == "int8" and not has_vnni():
            assert "no VNNI" in str(exc) and "vpmaddubsw" in str(exc), exc
            return None
        raise


@pytest.mark.parametrize("runtime, precision, model", COMBOS)
def test_every_runtime_and_precision_gives_paddle_fp32s_top1(
    runtime, precision, model, fp32_small, int8_small_avg, val_clips
):
    if precision == "bf16" and not has_bf16():
        pytest.skip("this CPU has no BF16 instructions (avx512_bf16 / amx_bf16)")
    clips = val_clips[0]
    expected = PaddlePredictor(fp32_small, PredictorConfig(precision="fp32")).run(clips)
    folder = fp32_small if model == "fp32" else int8_small_avg.output_dir
    predictor = open_or_refused_for_the_isa(folder, runtime, precision)
    if predictor is None:
        return
    assert (predictor.runtime, predictor.precision) == (runtime, precision)
    got = predictor.run(clips)
    agreement = float(np.mean(got.argmax(1) == expected.argmax(1)))
    assert agreement >= 0.99, (agreement, got.argmax(1), expected.argmax(1))
    if model == "fp32":
        assert cosine_similarity(got, expected).min() >= 0.99
    twin = predictor.clone()  # one per engine worker: same answers
    np.testing.assert_allclose(twin.run(clips[:2]), got[:2], atol=1e-4 * np.abs(got).max())


def test_a_runtime_that_computes_the_model_wrongly_is_refused_with_the_figures(int8_small_avg):
    """OpenVINO 2026.4 runs the small PP-TSM's QDQ graph wrongly (cosine about -0.5): refused, not served."""
    with pytest.raises(ModelError, match=r"openvino/int8 computes .* differently from Paddle \(cosine"):
        open_predictor(int8_small_avg.output_dir, PredictorConfig(runtime="openvino", precision="int8"))


def test_r50_on_every_runtime_agrees_with_paddle(r50_fp32, r50_int8):
    """Each predictor checks itself against Paddle on a seeded batch when made (cosine >= 0.99, INT8 0.95)."""
    # OpenVINO's INT8 of paddle2onnx's QDQ graph is refused on both test models (see the test above)
    combos = [
        ("openvino", "fp32", r50_fp32),
        ("onnxruntime", "fp32", r50_fp32),
        ("onnxruntime", "int8", r50_int8.output_dir),
    ]
    if has_bf16():
        combos += [("openvino", "bf16", r50_fp32), ("paddle", "bf16", r50_fp32)]
    for runtime, precision, folder in combos:
        predictor = open_or_refused_for_the_isa(folder, runtime, precision)
        if predictor is not None and runtime != "paddle":
            floor = 0.95 if precision == "int8" else 0.99
            assert predictor.agreement["cosine_min"] >= floor, (runtime, precision, predictor.agreement)


@pytest.mark.parametrize("bundle_name, runtime", [("bundle_fp32", "openvino"), ("bundle_int8", "onnxruntime")])
def test_vslim_serve_on_another_runtime_answers_like_paddle(request, bundle_name, runtime, val_clips):
    bundle = request.getfixturevalue(bundle_name)
    clips = val_clips[0][:4]
    expected = PaddlePredictor(bundle.server).run(clips)
    conf = ClientConfig.load(bundle.client)
    if bundle_name == "bundle_int8" and open_or_refused_for_the_isa(bundle.server, runtime, "int8") is None:
        return  # refused for this CPU's ISA, with the cause (checked above): nothing to serve
    with ServerProcess(bundle.server, "--runtime", runtime, "--max-batch-size", "4", "--workers", "2") as server:
        model = json.loads(urllib.request.urlopen(f"{server.url}/model", timeout=30).read())
        assert model["runtime"] == runtime
        assert any(f"{runtime} {model['precision']}" in line for line in server.lines)
        for protocol in ("grpc", "http-proto", "v2-grpc", "v2-http"):
            with make_client(protocol, server.address, conf) as client:
                got = client.predict({"data_batch_0": clips})["outputs"]
            assert (got.argmax(1) == expected.argmax(1)).all(), protocol


def test_bad_runtime_choices_name_the_fix(capsys, fp32_small, int8_small_avg, monkeypatch, tmp_path):
    from vslim.cli.main import main

    with pytest.raises(SystemExit) as exit_info:
        main(["predict", "--model-dir", str(fp32_small), "--input-file", str(tmp_path), "--runtime", "tvm"])
    assert exit_info.value.code == 2 and "invalid choice: 'tvm'" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="needs a quantized model"):
        open_predictor(fp32_small, PredictorConfig(runtime="openvino", precision="int8"))
    with pytest.raises(ConfigError, match="onnxruntime has no bf16"):
        open_predictor(fp32_small, PredictorConfig(runtime="onnxruntime", precision="bf16"))
    with pytest.raises(ConfigError, match="is an INT8 model"):
        open_predictor(int8_small_avg.output_dir, PredictorConfig(runtime="onnxruntime", precision="fp32"))
    # a host without BF16: the decision reads /proc/cpuinfo's flags, here replaced by a set without them
    monkeypatch.setattr("vslim.inference.cpu.cpu_flags", lambda: {"avx2", "avx512f"})
    from vslim.inference.model_info import inspect_model

    with pytest.raises(ConfigError, match="no BF16 instructions"):
        check_precision("openvino", "bf16", inspect_model(fp32_small))


def test_auto_measures_every_runtime_records_the_fastest_and_serves_it(cli, fp32_small, val_clips, tmp_path):
    r = cli(
        "package",
        "--target",
        "serving",
        "--model-dir",
        str(fp32_small),
        "--out",
        str(tmp_path / "b"),
        "--name",
        "small",
    )
    assert r.code == 0, r.err
    server, client = tmp_path / "b" / "small_serving_server", tmp_path / "b" / "small_serving_client"
    record = json.loads((server / "runtime.json").read_text())
    rows = {(row["runtime"], row["precision"]): row for row in record["table"]}
    assert set(rows) == {
        ("paddle", "fp32"),
        ("paddle", "bf16"),
        ("openvino", "fp32"),
        ("openvino", "bf16"),
        ("onnxruntime", "fp32"),
    }
    for (_runtime, precision), row in rows.items():
        if precision == "bf16" and not has_bf16():
            assert row["status"] == "skipped" and "no BF16" in row["reason"]
        else:
            assert row["status"] == "ok" and row["cosine_vs_paddle"] >= 0.99, row
    ok = [row for row in record["table"] if row["status"] == "ok"]
    best = min(ok, key=lambda row: row["p50_ms"])
    assert record["chosen"] == {"runtime": best["runtime"], "precision": best["precision"]}
    assert "avx2" in record["measured_on"]["flags"] and "chosen:" in r.err
    manifest = json.loads((tmp_path / "b" / "vslim_manifest.json").read_text())["files"]
    assert "small_serving_server/runtime.json" in manifest
    assert any(f.startswith("small_serving_server/converted/onnx-") and f.endswith("model.onnx") for f in manifest)

    clips = val_clips[0][:4]
    expected = PaddlePredictor(server).run(clips)
    chosen = f"{best['runtime']} {best['precision']}"
    with ServerProcess(server) as process:
        assert any("ready in" in line and chosen in line for line in process.lines), process.log()
        model = json.loads(urllib.request.urlopen(f"{process.url}/model", timeout=30).read())
        assert (model["runtime"], model["precision"]) == (best["runtime"], best["precision"])
        for protocol in ("grpc", "http-proto", "v2-grpc", "v2-http"):
            with make_client(protocol, process.address, ClientConfig.load(client)) as c:
                got = c.predict({"data_batch_0": clips})["outputs"]
            assert (got.argmax(1) == expected.argmax(1)).all(), protocol
    # serving wrote nothing into the bundle: it still verifies
    from vslim.serving.bundle import verify_bundle

    verify_bundle(server)


def test_a_recorded_runtime_missing_here_falls_back_to_paddle_with_a_warning(fp32_small, tmp_path):
    from vslim.serving.bundle import package_serving
    from vslim.serving.config import ServingPackageConfig

    paths = package_serving(
        ServingPackageConfig(str(fp32_small), str(tmp_path / "b"), name="small", runtime="openvino", precision="fp32")
    )
    assert json.loads((paths.server / "runtime.json").read_text())["chosen"]["runtime"] == "openvino"
    hidden = tmp_path / "no-openvino" / "openvino"
    hidden.mkdir(parents=True)
    (hidden / "__init__.py").write_text("raise ImportError('openvino is not installed on this host')\n")
    import os

    env = {"PYTHONPATH": os.pathsep.join([str(hidden.parent), os.environ.get("PYTHONPATH", "")])}
    with ServerProcess(paths.server, env=env) as process:
        log = process.log()
        assert "measured fastest on openvino fp32, which is not installed here; serving with paddle" in log
        assert any("ready in" in line and "paddle fp32" in line for line in process.lines), log


def test_packaging_for_a_runtime_that_cannot_serve_the_model_writes_nothing(cli, int8_small_avg, tmp_path):
    out = tmp_path / "b"
    r = cli(
        "package",
        "--target",
        "serving",
        "--model-dir",
        str(int8_small_avg.output_dir),
        "--out",
        str(out),
        "--runtime",
        "openvino",
    )
    assert r.code == 2 and "openvino int8 cannot serve this model here" in r.err and "differently from Paddle" in r.err
    assert not out.exists() and not list(tmp_path.glob(".*"))


def test_auto_with_real_clips_requires_fp32s_top1_and_refuses_the_wrong_runtime(
    cli, int8_small_avg, synth_data, tmp_path
):
    r = cli(
        "package",
        "--target",
        "serving",
        "--model-dir",
        str(int8_small_avg.output_dir),
        "--out",
        str(tmp_path / "b"),
        "--name",
        "small",
        "--val-list",
        str(synth_data / "val.list"),
    )
    assert r.code == 0, r.err
    record = json.loads((tmp_path / "b" / "small_serving_server" / "runtime.json").read_text())
    guard = record["accuracy_guard"]
    assert guard["clips"] == 32 and guard["min_top1_agreement"] == 0.99
    assert guard["fp32_model"] == json.loads((int8_small_avg.output_dir / "vslim.json").read_text())["source"]
    rows = {row["runtime"]: row for row in record["table"]}
    assert set(rows) == {"paddle", "openvino", "onnxruntime"}
    assert rows["openvino"]["status"] == "refused" and "differently from Paddle" in rows["openvino"]["reason"]
    if rows["onnxruntime"]["status"] != "ok":  # refused by the guard against FP32, naming a missing VNNI if so
        # (ONNX Runtime's INT8 gave 31 of 32 clips on an AMX host and 32 of 40 on an AVX2-only one)
        reason = rows["onnxruntime"]["reason"]
        assert "top-1 agreement with FP32" in reason and (has_vnni() or "no VNNI" in reason), rows["onnxruntime"]
    for row in record["table"]:
        if row["status"] == "ok":
            assert row["top1_agreement_vs_fp32"] >= 0.99 and row["clips"] == 32, row
    assert record["chosen"]["runtime"] in {row["runtime"] for row in record["table"] if row["status"] == "ok"}
    assert "top-1 agreement with FP32" in r.err


def test_calib_list_adds_openvinos_own_int8_which_serves_like_paddle(cli, fp32_small, synth_data, val_clips, tmp_path):
    r = cli(
        "package",
        "--target",
        "serving",
        "--model-dir",
        str(fp32_small),
        "--out",
        str(tmp_path / "b"),
        "--name",
        "small",
        "--calib-list",
        str(synth_data / "calib.list"),
        "--val-list",
        str(synth_data / "val.list"),
    )
    assert r.code == 0, r.err
    server = tmp_path / "b" / "small_serving_server"
    record = json.loads((server / "runtime.json").read_text())
    # the split of the 2 measuring threads fastest under load on the choice, each split measured
    layout = record["layout"]
    assert (layout["runtime"], layout["precision"]) == (record["chosen"]["runtime"], record["chosen"]["precision"])
    assert [(row["workers"], row["threads"]) for row in layout["table"]] == [(1, 2), (2, 1)]
    assert all(row["clips_per_s"] > 0 and row["calls"] >= 2 for row in layout["table"])
    assert (layout["workers"], layout["threads"]) in [(1, 2), (2, 1)]
    nncf = next(row for row in record["table"] if (row["runtime"], row["precision"]) == ("openvino", "int8"))
    assert nncf["calibration"].startswith("nncf (32 clips")
    files = json.loads((tmp_path / "b" / "vslim_manifest.json").read_text())["files"]
    assert any(f.endswith("/nncf-int8.xml") for f in files) and any(f.endswith("/nncf-int8.bin") for f in files)
    if nncf["status"] == "ok":
        assert nncf["top1_agreement_vs_fp32"] >= 0.99
        clips = val_clips[0][:4]
        expected = PaddlePredictor(fp32_small).run(clips)
        client_dir = tmp_path / "b" / "small_serving_client"
        with ServerProcess(server, "--runtime", "openvino", "--precision", "int8") as process:
            assert any("ready in" in line and "openvino int8" in line for line in process.lines), process.log()
            with make_client("v2-grpc", process.address, ClientConfig.load(client_dir)) as c:
                got = c.predict({"data_batch_0": clips})["outputs"]
        assert (got.argmax(1) == expected.argmax(1)).all()
    else:  # the guard did its job on this model (the weights trained here decide): it says which check failed
        assert nncf["status"] == "refused" and re.search(r"agreement|cosine|differently", nncf["reason"]), nncf
        assert record["chosen"] != {"runtime": "openvino", "precision": "int8"}
    # served as packaged (no flags): the recorded runtime on the recorded split
    chosen = record["chosen"]
    with ServerProcess(server) as process:
        split = f"{chosen['runtime']} {chosen['precision']} on cpu, {layout['workers']} worker(s) x {layout['threads']}"
        assert any("ready in" in line and split in line for line in process.lines), process.log()
    # its weights changed after packaging: refused, never run
    weights = next(server.rglob("nncf-int8.bin"))
    weights.write_bytes(weights.read_bytes()[:-16] + b"\0" * 16)
    with pytest.raises(ModelError, match="does not match its checksums"):
        open_predictor(server, PredictorConfig(runtime="openvino", precision="int8"), cache=server / "converted")
