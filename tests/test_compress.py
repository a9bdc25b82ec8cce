"""QAT and pruning on the small PP-TSM and the synthetic set, and the chain prune -> QAT -> serving."""

import json

import numpy as np
import pytest
from servers import ServerProcess

from vslim.compress.config import PruneConfig, QATConfig
from vslim.config import ListConfig
from vslim.inference import PaddlePredictor, inspect_model
from vslim.model_meta import load_meta

pytestmark = pytest.mark.slow


def _lists(data):
    return dict(train=ListConfig(str(data / "train.list")), val=ListConfig(str(data / "val.list")))


@pytest.fixture(scope="session")
def qat_small(trained_small, int8_small_avg, synth_data, tmp_path_factory):
    from vslim.compress.qat import qat

    out = tmp_path_factory.mktemp("qat") / "small"
    report = qat(
        QATConfig(
            weights=str(trained_small.output_dir / "model.pdparams"),
            output_dir=str(out),
            ptq_model=str(int8_small_avg.output_dir),
            **_lists(synth_data),
        ),
        say=lambda _: None,
    )
    return out, report


@pytest.fixture(scope="session")
def pruned_small(trained_small, synth_data, tmp_path_factory):
    from vslim.compress.prune import prune_model

    out = tmp_path_factory.mktemp("prune") / "small"
    report = prune_model(
        PruneConfig(
            weights=str(trained_small.output_dir / "model.pdparams"),
            output_dir=str(out),
            flops_target=0.3,
            **_lists(synth_data),
        ),
        say=lambda _: None,
    )
    return out, report


def test_qat_beats_or_matches_ptq_and_stays_within_a_point_of_fp32(qat_small):
    out, report = qat_small
    res = report["results"]
    assert res["qat"]["top1"] >= res["ptq"]["top1"], res
    assert res["fp32"]["top1"] - res["qat"]["top1"] <= 0.01, res
    info = inspect_model(out)
    assert info.quantized and info.meta.precision == "int8" and info.meta.quantization["method"] == "qat"
    assert PaddlePredictor(out).precision == "int8"
    assert "| INT8 (QAT)" in (out / "qat_report.md").read_text()
    assert not (out.parent / f"{out.name}.checkpoints").exists()
    assert [h["epoch"] for h in report["history"]] == list(range(1, report["epochs"] + 1))


def test_pruning_removes_30_percent_of_flops_and_keeps_accuracy(pruned_small):
    out, report = pruned_small
    assert report["flops"]["reduction"] >= 0.30
    assert report["top1"]["before"] - report["top1"]["after_finetune"] <= 0.02, report["top1"]
    assert report["params"]["after"] < report["params"]["before"]
    assert report["inference_model"]["after_bytes"] < report["inference_model"]["before_bytes"]
    assert all(report["latency_ms"][k] > 0 for k in ("before_batch1", "after_batch1", "before_batch8", "after_batch8"))
    # the layers the pruner cannot handle are excluded and named, with the reason
    excluded = report["excluded"]
    assert "backbone.conv1_3._conv.weight" in excluded and "temporal_shift" in excluded["backbone.conv1_3._conv.weight"]
    assert all("residual" in why for k, why in excluded.items() if ".conv2." in k or ".short." in k)
    assert not any(".conv2." in k or ".short." in k for k in report["ratios"])
    meta = load_meta(out / "weights")
    assert meta.pruning["ratios"] == report["ratios"]
    info = inspect_model(out / "inference")
    assert info.meta.pruning and list(info.inputs[0].shape) == [-1, 8, 3, 64, 64]


def test_sensitivity_analysis_drives_ratios(trained_small, synth_data, tmp_path):
    from vslim.compress.prune import prune_model

    out = tmp_path / "sens"
    report = prune_model(
        PruneConfig(
            weights=str(trained_small.output_dir / "model.pdparams"),
            output_dir=str(out),
            flops_target=0.2,
            sensitivity=True,
            sensitivity_ratios=[0.25, 0.5],
            sensitivity_clips=30,
            finetune_epochs=0,
            **_lists(synth_data),
        ),
        say=lambda _: None,
    )
    sens = json.loads((out / "sensitivity.json").read_text())
    assert len(sens) == 10 and set(report["ratios"]) <= set(sens)
    assert all(set(curve) == {"0.25", "0.5"} for curve in sens.values())
    assert report["flops"]["reduction"] >= 0.2 and report["mode"] == "flops_target + sensitivity"
    assert (out / "sensitivity.png").stat().st_size > 1000


def test_chain_prune_qat_serving(pruned_small, synth_data, tmp_path):
    from vslim.compress.qat import qat
    from vslim.serving.bundle import package_serving
    from vslim.serving.client import ClientConfig, GrpcClient, classify_video
    from vslim.serving.config import ServingPackageConfig

    pruned, _ = pruned_small
    qat_out = tmp_path / "qat"
    report = qat(
        QATConfig(
            weights=str(pruned / "weights" / "model.pdparams"), output_dir=str(qat_out), epochs=2, **_lists(synth_data)
        ),
        say=lambda _: None,
    )
    assert report["results"]["qat"]["top1"] >= 0.9
    bundle = package_serving(ServingPackageConfig(str(qat_out), str(tmp_path / "bundle"), name="pruned_int8"))
    server = ServerProcess(bundle.server)
    try:
        conf = ClientConfig.load(bundle.client)
        clip = np.random.default_rng(0).standard_normal((2, 8, 3, 64, 64)).astype(np.float32)
        expected = PaddlePredictor(qat_out).run(clip)
        with GrpcClient(server.address, conf) as client:
            got = client.predict({"data_batch_0": clip})["outputs"]
            np.testing.assert_allclose(got, expected, atol=1e-4 * np.abs(expected).max())
            assert classify_video(client, synth_data / "demo.mp4", 1).labels == ["move_right"]
    finally:
        assert server.stop() == 0, server.log()


def test_interrupted_fine_tune_resumes_and_leaves_nothing_half_written(trained_small, synth_data, tmp_path):
    from vslim.compress.prune import prune_model

    out = tmp_path / "pruned"
    cfg = PruneConfig(
        weights=str(trained_small.output_dir / "model.pdparams"),
        output_dir=str(out),
        ratio=0.25,
        finetune_epochs=2,
        **_lists(synth_data),
    )

    def interrupt_after_first_epoch(message):
        if "fine-tune epoch 1" in message:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        prune_model(cfg, say=interrupt_after_first_epoch)
    assert not out.exists() and [p.name for p in tmp_path.iterdir()] == ["pruned.checkpoints"]
    state = json.loads((tmp_path / "pruned.checkpoints" / "state.json").read_text())
    assert state["epoch"] == 1
    cfg.resume = True
    seen = []
    report = prune_model(cfg, say=seen.append)
    assert [h["epoch"] for h in report["finetune_history"]] == [1, 2]
    assert any("fine-tune epoch 2" in m for m in seen) and not any("fine-tune epoch 1" in m for m in seen)
    assert (out / "weights" / "model.pdparams").is_file() and not (tmp_path / "pruned.checkpoints").exists()


def test_compress_bad_input(cli, trained_small, synth_data, tmp_path):
    weights = trained_small.output_dir / "model.pdparams"
    lists = ["--train-list", synth_data / "train.list", "--val-list", synth_data / "val.list"]
    r = cli("compress", "qat", "--weights", weights, "--arch", "pptsm_r50", *lists, "--out", tmp_path / "q")
    assert r.code == 2 and "does not match the architecture" in r.err and "lacks 'backbone." in r.err
    r = cli("compress", "prune", "--weights", weights, *lists, "--out", tmp_path / "p", "--ratio", "1.5")
    assert r.code == 2 and "ratio must be between 0 and 1" in r.err
    r = cli("compress", "prune", "--weights", weights, *lists, "--out", tmp_path / "p", "--flops-target", "0.97")
    assert r.code == 2 and "FLOPs target 97% cannot be reached" in r.err and "removes" in r.err
    (tmp_path / "taken").mkdir()
    r = cli("compress", "prune", "--weights", weights, *lists, "--out", tmp_path / "taken", "--ratio", "0.2")
    assert r.code == 2 and "already exists" in r.err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]


def test_full_size_pptsm_r50_prunes_at_224():
    """PaddleSlim traces a constant input that static Paddle caps at ~1M elements; an R50 clip at 224
    has 1.2M. The plan must still apply, and the pruned model run at full size."""
    import paddle

    from vslim.models import build_model
    from vslim.models.pruning import analyse, flops, prune

    paddle.seed(0)
    model = build_model("pptsm_r50", 400, 8)
    model.eval()
    shape = [1, 8, 3, 224, 224]
    layers = analyse(model, shape)
    assert len(layers.prunable) == 34 and len(layers.excluded) == 21
    before = flops(model, shape)
    prune(model, {name: 0.25 for name in layers.prunable}, shape)
    assert flops(model, shape) < 0.8 * before
    with paddle.no_grad():
        out = model(paddle.randn(shape))
    assert out.shape == [1, 400] and bool(paddle.isfinite(out).all())


def test_pptsm_v2_trains_prunes_quantizes_and_exports_folded(synth_data, tmp_path):
    """PP-TSMv2 through vslim's zoo steps: fine-tune, prune (in its folded form, the plan says so), QAT of the
    pruned weights, and an export that rebuilds the folded, pruned shapes. Mechanics on a few clips (the
    full-width backbone trains at ~1 clip/s here), not accuracy."""
    from vslim.compress.prune import prune_model
    from vslim.compress.qat import qat
    from vslim.config import PreprocessConfig, TrainConfig
    from vslim.export import export_model
    from vslim.inference.program import parse_program
    from vslim.train import train

    few = {}
    for name, n in (("train", 16), ("val", 8)):
        lines = (synth_data / f"{name}.list").read_text().splitlines()[:n]
        few[name] = ListConfig(str(tmp_path / f"{name}.list"), data_prefix=str(synth_data))
        (tmp_path / f"{name}.list").write_text("\n".join(lines) + "\n")
    trained = train(
        TrainConfig(
            arch="pptsm_v2",
            output_dir=str(tmp_path / "trained"),
            epochs=1,
            batch_size=8,
            preprocess=PreprocessConfig(num_seg=4, short_size=72, target_size=64),
            **few,
        )
    )
    weights = trained.output_dir / "model.pdparams"
    said = []
    report = prune_model(
        PruneConfig(weights=str(weights), output_dir=str(tmp_path / "pruned"), ratio=0.3, finetune_epochs=0, **few),
        say=said.append,
    )
    assert any("folded first" in line for line in said)
    assert report["flops"]["reduction"] > 0.2
    plan = load_meta(tmp_path / "pruned" / "weights").pruning
    assert plan["folded"] is True and plan["ratios"]
    assert not any("dw_conv_list" in k for k in plan["ratios"])
    pruned = tmp_path / "pruned" / "inference"
    ops = [op.type for op in parse_program(pruned / "model.pdmodel").blocks[0].ops]
    assert ops.count("depthwise_conv2d") == 13  # folded: one depthwise conv per block

    again = export_model(tmp_path / "pruned" / "weights" / "model.pdparams", tmp_path / "again")  # plan + fold
    clip = np.random.default_rng(0).standard_normal((1, 4, 3, 64, 64)).astype(np.float32)
    np.testing.assert_allclose(
        PaddlePredictor(again).run(clip), PaddlePredictor(pruned).run(clip), rtol=1e-5, atol=1e-5
    )

    report = qat(
        QATConfig(
            weights=str(tmp_path / "pruned" / "weights" / "model.pdparams"),
            output_dir=str(tmp_path / "qat"),
            epochs=1,
            batch_size=8,
            **few,
        ),
        say=said.append,
    )
    assert inspect_model(tmp_path / "qat").quantized
    assert report["results"]["qat"]["clips"] == 8
