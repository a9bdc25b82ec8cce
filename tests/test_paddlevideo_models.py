"""PaddleVideo's recognition families as PaddleVideo exports them: preprocessing, answers, every step.

The models are small stand-ins built here (tests/family_models.py) with each family's input names,
layouts and key ops. The expected arrays are computed by the test itself from the operations
PaddleVideo's inference helpers document (Pillow images, PIL crops and flips, Paddle's own
``F.interpolate``), not from vslim's code and not from copied numbers.
"""

from __future__ import annotations

import json
import math

import family_models as fm
import numpy as np
import pytest
from PIL import Image

from vslim.data.recipes import HELPERS, Recipe, from_config, segment_centres
from vslim.errors import ConfigError

pytestmark = pytest.mark.slow

CONFIGS = {
    "tsn": {
        "MODEL": {"head": {"name": "TSNHead", "num_classes": 5}},
        "model_name": "TSN",
        "INFERENCE": {"name": "ppTSN_Inference_helper", "num_seg": 8, "short_size": 40, "target_size": 32},
    },
    "movinet": {
        "model_name": "MoViNet",
        "INFERENCE": {"name": "ppTSM_Inference_helper", "num_seg": 8, "short_size": 36, "target_size": 32},
    },
    "timesformer": {
        "model_name": "ppTimeSformer",
        "INFERENCE": {
            "name": "TimeSformer_Inference_helper",
            "num_seg": 8,
            "short_size": 32,
            "target_size": 32,
            "mean": [0, 0, 0],
            "std": [1, 1, 1],
        },
    },
    "videoswin": {
        "model_name": "VideoSwin",
        "INFERENCE": {
            "name": "VideoSwin_Inference_helper",
            "num_seg": 1,
            "seg_len": 8,
            "short_size": 40,
            "target_size": 32,
        },
    },
    "slowfast": {
        "model_name": "SlowFast",
        "INFERENCE": {"name": "SlowFast_Inference_helper", "num_frames": 8, "alpha": 4, "target_size": 32},
    },
}
BUILD = {
    "tsn": {},
    "movinet": {},
    "timesformer": {"num_seg": 24},
    "videoswin": {},
    "slowfast": {"input_names": ("slow_input", "fast_input")},
}


@pytest.fixture(autouse=True)
def own_home(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("VSLIM_HOME", str(tmp_path_factory.getbasetemp() / "vslim-home"))


@pytest.fixture(scope="session")
def family_video(tmp_path_factory):
    """A 90-frame 64x48 video at 30 fps with moving shapes (vslim's synthetic renderer)."""
    from vslim.data.synth import _write_video, render_clip

    path = tmp_path_factory.mktemp("family-video") / "clip.mp4"
    _write_video(path, render_clip(3, np.random.default_rng(0), 90, 48, 64), 30)
    return path


@pytest.fixture(scope="session")
def family_models(tmp_path_factory):
    """Each family exported as PaddleVideo would, with its config beside it (not yet imported)."""
    import yaml

    root = tmp_path_factory.mktemp("families")
    out = {}
    for family, cfg in CONFIGS.items():
        folder = fm.build(family, root / family, name=cfg["model_name"], **BUILD[family])
        config = root / f"{family}.yaml"
        config.write_text(yaml.safe_dump(cfg))
        out[family] = (folder, config)
    return out


def _frames(video):
    from vslim.data.decode import open_video

    with open_video(video) as reader:
        return reader.read(range(reader.num_frames)), reader.fps


# ----------------------------------------------------------------------- the documented operations


def pil_scale(img: Image.Image, short: int, fixed_ratio=True, keep_ratio=None, do_round=False) -> tuple[int, int]:
    w, h = img.size
    if (w <= h and w == short) or (h <= w and h == short):
        return w, h
    if w <= h:
        ow, oh = short, (int(short * 4.0 / 3.0) if fixed_ratio else int(h * short / w + (0.5 if do_round else 0)))
    else:
        oh, ow = short, (int(short * 4.0 / 3.0) if fixed_ratio else int(w * short / h + (0.5 if do_round else 0)))
    return ow, oh


def expected_pptsm(frames, n_seg, short, size):
    average = int(len(frames) / n_seg)
    idx = [((average - 1) // 2 + i * average) % len(frames) for i in range(n_seg)]
    imgs = [Image.fromarray(frames[i]) for i in idx]
    imgs = [im.resize(pil_scale(im, short), Image.BILINEAR) for im in imgs]
    w, h = imgs[0].size
    x1, y1 = int(round((w - size) / 2.0)), int(round((h - size) / 2.0))
    imgs = [im.crop((x1, y1, x1 + size, y1 + size)) for im in imgs]
    x = np.stack(imgs).astype("float32").transpose(0, 3, 1, 2) / 255.0
    x -= np.array([0.485, 0.456, 0.406]).reshape([3, 1, 1]).astype(np.float32)
    x /= np.array([0.229, 0.224, 0.225]).reshape([3, 1, 1]).astype(np.float32)
    return x


def expected_tsn(frames, n_seg, short, size):
    a = len(frames) / n_seg
    idx = [int(a / 2.0 + a * x) for x in range(n_seg)]
    import cv2

    imgs = []
    for i in idx:
        im = Image.fromarray(frames[i])
        ow, oh = pil_scale(im, short)
        imgs.append(Image.fromarray(cv2.resize(np.asarray(im), (ow, oh), interpolation=cv2.INTER_LINEAR)))
    w, h = imgs[0].size
    ws, hs = (w - size) // 4, (h - size) // 4
    crops = []
    for x, y in [(0, 0), (4 * ws, 0), (0, 4 * hs), (4 * ws, 4 * hs), (2 * ws, 2 * hs)]:
        c = [im.crop((x, y, x + size, y + size)) for im in imgs]
        crops += c + [im.transpose(Image.FLIP_LEFT_RIGHT) for im in c]
    x = np.stack(crops).astype("float32").transpose(0, 3, 1, 2) / 255.0
    x -= np.array([0.485, 0.456, 0.406]).reshape([3, 1, 1]).astype(np.float32)
    x /= np.array([0.229, 0.224, 0.225]).reshape([3, 1, 1]).astype(np.float32)
    return x


def expected_timesformer(frames, fps, n_seg, short, size, mean, std):
    import paddle
    import paddle.nn.functional as F

    clip = 32 * n_seg / 30 * fps
    idx = np.clip(np.linspace(0, clip - 1, n_seg), 0, len(frames) - 1).astype(np.int64)
    x = np.stack([frames[i] for i in idx]) / 255.0
    x -= np.array(mean).reshape([1, 1, 1, 3]).astype(np.float32)
    x /= np.array(std).reshape([1, 1, 1, 3]).astype(np.float32)
    x = paddle.to_tensor(x, dtype=paddle.float32).transpose([3, 0, 1, 2])
    h, w = x.shape[2:]
    if not ((w <= h and w == short) or (h <= w and h == short)):
        nh, nw = (int(math.floor(h / w * short)), short) if w < h else (short, int(math.floor(w / h * short)))
        x = F.interpolate(x, size=(nh, nw), mode="bilinear", align_corners=False)
    h, w = x.shape[2:]
    step = (w - size) // 2
    crops = [x[:, :, 0:size, xo : xo + size] for xo in (0, 2 * step, step)]
    return paddle.concat(crops, axis=1).numpy()


def expected_videoswin(frames, seg_len, short, size, mean, std):
    import cv2

    n, span = len(frames), seg_len * 2
    start = int((n - span + 1) / 2.0) if n > span - 1 else 0
    idx = [(start + 2 * k) % n for k in range(seg_len)]
    out = []
    for i in idx:
        f = frames[i]
        h, w = f.shape[:2]
        ow, oh = (
            (int(w * (short / h) + 0.5), int(h * (short / h) + 0.5))
            if h < w
            else (int(w * (short / w) + 0.5), int(h * (short / w) + 0.5))
        )
        f = cv2.resize(f, (ow, oh), interpolation=cv2.INTER_LINEAR)
        x1, y1 = int(round((ow - size) / 2.0)), int(round((oh - size) / 2.0))
        img = f[y1 : y1 + size, x1 : x1 + size].astype(np.float32)
        cv2.subtract(img, np.float64(np.array(mean, np.float32).reshape(1, -1)), img)
        cv2.multiply(img, 1 / np.float64(np.array(std, np.float32).reshape(1, -1)), img)
        out.append(img)
    return np.stack(out).transpose(3, 0, 1, 2)


def expected_slowfast(frames, fps, num_frames, alpha, size):
    clip = num_frames * 2 * fps / 30
    idx = np.clip(np.linspace(0, clip - 1, num_frames).astype("int64"), 0, len(frames) - 1)
    imgs = [Image.fromarray(frames[i]) for i in idx]
    w, h = imgs[0].size
    nw, nh = (size, int(math.floor(h / w * size))) if w < h else (int(math.floor(w / h * size)), size)
    imgs = [im.resize((nw, nh), Image.BILINEAR) for im in imgs]
    x0, y0 = int(math.ceil((nw - size) / 2)), int(math.ceil((nh - size) / 2))  # MultiCrop's test-mode centre
    fast = np.stack([im.crop((x0, y0, x0 + size, y0 + size)) for im in imgs]).astype("float32") / 255.0
    fast -= np.array([0.45] * 3).reshape([1, 1, 1, 3]).astype(np.float32)
    fast /= np.array([0.225] * 3).reshape([1, 1, 1, 3]).astype(np.float32)
    slow = fast[np.linspace(0, len(fast) - 1, len(fast) // alpha).astype("int64")]
    return [slow.transpose(3, 0, 1, 2), fast.transpose(3, 0, 1, 2)]


def expected_inputs(family, frames, fps):
    if family == "movinet":
        return [expected_pptsm(frames, 8, 36, 32)]
    if family == "tsn":
        return [expected_tsn(frames, 8, 40, 32)]
    if family == "timesformer":
        return [expected_timesformer(frames, fps, 8, 32, 32, [0, 0, 0], [1, 1, 1])]
    if family == "videoswin":
        return [expected_videoswin(frames, 8, 40, 32, [123.675, 116.28, 103.53], [58.395, 57.12, 57.375])]
    return expected_slowfast(frames, fps, 8, 4, 32)


# ----------------------------------------------------------------------- tests


def test_sampling_indices_follow_paddlevideos_formulas():
    assert segment_centres(300, 8, 1) == [18, 55, 92, 129, 166, 203, 240, 277]
    tsn = Recipe("ppTSN_Inference_helper", ["x"], num_seg=25)
    assert tsn.indices(300).tolist() == [int(6 + 12 * i) for i in range(25)]
    assert tsn.indices(20).tolist() == [0] * 25  # fewer frames than segments: PaddleVideo takes frame 0
    slowfast = Recipe("SlowFast_Inference_helper", ["a", "b"])
    assert slowfast.indices(300, 30.0).tolist() == [int(v) for v in np.linspace(0, 63, 32)]
    swin = Recipe("VideoSwin_Inference_helper", ["x"], num_seg=1, seg_len=32)
    assert swin.indices(300).tolist() == [(int((300 - 63) / 2.0) + 2 * k) % 300 for k in range(32)]
    tf = Recipe("TimeSformer_Inference_helper", ["x"], num_seg=8)
    assert tf.indices(300, 30.0).tolist() == np.linspace(0, 255, 8).astype(np.int64).tolist()
    assert tf.indices(90, 30.0).max() == 89  # a short video: clamped to its last frame, as PaddleVideo does


@pytest.mark.parametrize("family", list(CONFIGS))
def test_each_familys_inputs_are_paddlevideos_arrays(family, family_models, family_video):
    from vslim.data.pipeline import ClipPipeline, as_inputs
    from vslim.inference import inspect_model

    folder, config = family_models[family]
    info = inspect_model(folder, paddlevideo_config=config)
    frames, fps = _frames(family_video)
    got = as_inputs(ClipPipeline.for_model(info.meta).from_video(family_video))
    want = expected_inputs(family, frames, fps)
    assert [list(g.shape) for g in got] == [list(w.shape) for w in want]
    for g, w, spec in zip(got, want, info.inputs):
        assert list(spec.shape[1:]) == list(g.shape)
        np.testing.assert_allclose(g, w, rtol=0, atol=1e-5)  # float rounding only (the bilinear maths agree)


def test_fast_resize_is_an_explicit_choice_one_grey_level_from_paddlevideo(family_models, family_video, tmp_path, cli):
    """``vslim import --fast-resize``: OpenCV's bilinear where the helper uses Pillow, recorded in the recipe; the
    rest of the helper unchanged. Shrinking (this video: 48 -> 36 lines), Pillow widens its filter and OpenCV
    does not, so the inputs differ from PaddleVideo's by more than a grey level at sharp edges."""
    import shutil

    import cv2

    from vslim.data.pipeline import ClipPipeline, as_inputs
    from vslim.inference import inspect_model

    folder = tmp_path / "movinet"
    shutil.copytree(family_models["movinet"][0], folder)
    r = cli("import", "--model-dir", folder, "--config", family_models["movinet"][1], "--fast-resize")
    assert r.code == 0, r.err
    meta = inspect_model(folder).meta
    assert meta.recipe.fast_resize is True
    got = as_inputs(ClipPipeline.for_model(meta).from_video(family_video))[0]
    frames, fps = _frames(family_video)
    exact = expected_inputs("movinet", frames, fps)[0]
    assert np.abs(got - exact).max() > 1 / 255 / 0.229  # not PaddleVideo's arrays: the option did something
    average = len(frames) // 8
    picked = [frames[((average - 1) // 2 + i * average) % len(frames)] for i in range(8)]
    resized = [cv2.resize(f, pil_scale(Image.fromarray(f), 36), interpolation=cv2.INTER_LINEAR) for f in picked]
    h, w = resized[0].shape[:2]
    x1, y1 = int(round((w - 32) / 2.0)), int(round((h - 32) / 2.0))
    x = np.stack([f[y1 : y1 + 32, x1 : x1 + 32] for f in resized]).astype("float32").transpose(0, 3, 1, 2) / 255.0
    x -= np.array([0.485, 0.456, 0.406]).reshape([3, 1, 1]).astype(np.float32)
    x /= np.array([0.229, 0.224, 0.225]).reshape([3, 1, 1]).astype(np.float32)
    np.testing.assert_allclose(got, x, rtol=0, atol=1e-5)


def test_bench_on_a_two_input_model(family_models, family_video, tmp_path, cli):
    """vslim-bench e2e feeds SlowFast both pathways; the runtime matrix refuses it naming what works instead."""
    import shutil

    folder = tmp_path / "slowfast"
    shutil.copytree(family_models["slowfast"][0], folder)
    assert cli("import", "--model-dir", folder, "--config", family_models["slowfast"][1]).code == 0
    r = cli("bench", "e2e", "--model", folder, "--video", family_video, "--iterations", "2", "--out", tmp_path / "e2e")
    assert r.code == 0, r.err
    report = json.loads((tmp_path / "e2e" / "e2e.json").read_text())
    assert report["stages"]["inference_ms"]["p50_ms"] > 0
    r = cli("bench", "runtime", "--model", f"fp32={folder}", "--batch-sizes", "1", "--out", tmp_path / "rt")
    assert r.code == 2 and "takes 2 inputs (slow_input, fast_input)" in r.err and "vslim-bench e2e" in r.err
    assert not (tmp_path / "rt").exists()


def test_packaging_takes_the_paddlevideo_config_too(family_models, tmp_path, cli):
    """`--config` on `vslim package` records the helper in the package, as `vslim import` does in the folder."""
    folder, config = family_models["tsn"]
    r = cli(
        "package",
        "--target",
        "serving",
        "--model-dir",
        folder,
        "--config",
        config,
        "--runtime",
        "paddle",
        "--out",
        tmp_path / "b",
        "--name",
        "tsn",
    )
    assert r.code == 0, r.err
    meta = json.loads((tmp_path / "b" / "tsn_serving_server" / "vslim.json").read_text())
    assert meta["recipe"]["helper"] == "ppTSN_Inference_helper" and meta["recipe"]["num_seg"] == 8
    assert not (folder / "vslim.json").exists()  # the user's folder is left as it was
    r = cli(
        "package",
        "--target",
        "onnx",
        "--model-dir",
        folder,
        "--config",
        family_models["movinet"][1],
        "--out",
        tmp_path / "o",
    )
    assert r.code == 2 and "exported with another config" in r.err and not (tmp_path / "o").exists()


def test_large_clips_take_paddles_reference_from_a_child(family_models, tmp_path, cli, monkeypatch):
    """Past LARGE_CLIP_ELEMENTS (a 250-image PP-TSN clip), packaging's and the ONNX check's Paddle reference is
    computed in a child process (Paddle's allocator would keep a large run's buffers in this one), the Paddle
    candidates are measured last, and the figures are those of the in-process path."""
    from vslim import onnx_export
    from vslim.inference import model_info

    monkeypatch.setattr(model_info, "LARGE_CLIP_ELEMENTS", 1)  # the small TSN stand-in counts as large
    folder, config = family_models["tsn"]
    r = cli(
        "package",
        "--target",
        "serving",
        "--model-dir",
        folder,
        "--config",
        config,
        "--out",
        tmp_path / "b",
        "--name",
        "tsn",
    )
    assert r.code == 0, r.err
    lines = [
        ln.strip().split(":")[0] for ln in r.err.splitlines() if ln.strip().startswith(("paddle ", "onnxruntime "))
    ]
    assert lines and lines[-1].startswith("paddle")  # Paddle measured last
    server = tmp_path / "b" / "tsn_serving_server"
    record = json.loads((server / "runtime.json").read_text())
    assert [(row["runtime"], row["precision"]) for row in record["table"]][0] == ("paddle", "fp32")  # table order
    for row in record["table"]:
        assert row["status"] == "ok" and row["cosine_vs_paddle"] > 0.999, row
    onnx_report = next(server.rglob("onnx_report.json"))
    assert json.loads(onnx_report.read_text())["check_vs_paddle"]["cosine_min"] >= onnx_export.MIN_COSINE["fp32"]


def test_config_keys_are_checked_as_the_helpers_arguments():
    with pytest.raises(ConfigError, match="INFERENCE.num_segs is not an argument of ppTSM_Inference_helper.*num_seg"):
        from_config({"name": "ppTSM_Inference_helper", "num_segs": 8}, ["x"], "c.yaml")
    with pytest.raises(ConfigError, match="not a recognition helper vslim runs"):
        from_config({"name": "BMN_Inference_helper"}, ["x"], "c.yaml")
    assert set(HELPERS) == {
        "ppTSM_Inference_helper",
        "ppTSN_Inference_helper",
        "TimeSformer_Inference_helper",
        "VideoSwin_Inference_helper",
        "SlowFast_Inference_helper",
    }


@pytest.mark.parametrize("family", list(CONFIGS))
def test_import_then_predict_gives_paddlevideos_answer(family, family_models, family_video, tmp_path, cli):
    import shutil

    from vslim.accuracy import softmax
    from vslim.inference import PaddlePredictor, inspect_model

    folder = tmp_path / family
    shutil.copytree(family_models[family][0], folder)
    r = cli("import", "--model-dir", folder, "--config", family_models[family][1])
    assert r.code == 0, r.err
    meta = json.loads((folder / "vslim.json").read_text())
    assert meta["recipe"]["helper"] == CONFIGS[family]["INFERENCE"]["name"]
    assert meta["arch"] == CONFIGS[family]["model_name"]
    r = cli("info", "--model-dir", folder)
    assert r.code == 0 and meta["recipe"]["helper"] in r.out

    frames, fps = _frames(family_video)
    info = inspect_model(folder)
    predictor = PaddlePredictor(folder)
    feeds = {s.name: x[None] for s, x in zip(info.inputs, expected_inputs(family, frames, fps))}
    out = predictor.run_feeds(feeds)[info.outputs[0].name][0]
    probs = softmax(out) if HELPERS[meta["recipe"]["helper"]].output_kind == "logits" else out
    r = cli("predict", "--model-dir", folder, "--video", family_video, "--top-k", "3", "--json")
    assert r.code == 0, r.err
    pred = json.loads(r.out)["predictions"][0]
    assert pred["classes"] == np.argsort(-probs)[:3].tolist()
    np.testing.assert_allclose(pred["scores"], np.sort(probs)[::-1][:3], rtol=0, atol=1e-5)


@pytest.mark.parametrize("family", ["tsn", "timesformer", "videoswin", "slowfast"])
def test_without_a_config_an_ambiguous_layout_is_refused_not_guessed(family, family_models, family_video, cli):
    folder = family_models[family][0]
    r = cli("predict", "--model-dir", folder, "--video", family_video)
    assert r.code == 2 and r.out == ""
    assert "give the PaddleVideo config the model was exported with" in r.err
    r = cli("info", "--model-dir", folder)
    assert r.code == 0 and "unknown:" in r.out


def test_a_plain_pptsm_layout_without_config_says_what_it_assumed(family_models, cli):
    r = cli("info", "--model-dir", family_models["movinet"][0])
    assert r.code == 0 and "assumed" in r.out and "give --config" in r.out


def test_a_config_from_another_model_is_refused(family_models, cli, family_video):
    r = cli(
        "predict",
        "--model-dir",
        family_models["tsn"][0],
        "--config",
        family_models["movinet"][1],
        "--video",
        family_video,
    )
    assert r.code == 2 and "exported with another config" in r.err and r.out == ""


@pytest.mark.server
@pytest.mark.parametrize("family", ["slowfast", "videoswin"])
def test_served_family_answers_like_predict_through_every_protocol(family, family_models, family_video, tmp_path, cli):
    """A two-input model (both tensors over Paddle Serving and v2) and one that needed a fallback to load."""
    import shutil

    from servers import ServerProcess

    from vslim.serving.client import ClientConfig, VideoEndpointClient, classify_video, make_client

    folder = tmp_path / family
    shutil.copytree(family_models[family][0], folder)
    assert cli("import", "--model-dir", folder, "--config", family_models[family][1]).code == 0
    r = cli("predict", "--model-dir", folder, "--video", family_video, "--top-k", "2", "--json")
    assert r.code == 0, r.err
    want = json.loads(r.out)["predictions"][0]
    out = tmp_path / "bundle"
    r = cli(
        "package", "--target", "serving", "--model-dir", folder, "--out", out, "--name", family, "--runtime", "paddle"
    )
    assert r.code == 0, r.err
    server, client_dir = out / f"{family}_serving_server", out / f"{family}_serving_client"
    record = json.loads((server / "runtime.json").read_text())
    settings = record["paddle_settings"]
    assert (settings["name"] != "default") == (family == "videoswin"), settings  # oneDNN refuses the 8-D transpose
    conf = ClientConfig.load(client_dir)
    assert [f.name for f in conf.signature.feeds] == [
        s["name"] for s in json.loads((out / "vslim_manifest.json").read_text())["inputs"]
    ]
    with ServerProcess(server) as process:
        for protocol in ("grpc", "http", "http-proto", "v2-grpc", "v2-http"):
            with make_client(protocol, process.address, conf) as c:
                top = classify_video(c, family_video, top_k=2)
            assert top.classes == want["classes"], protocol
            np.testing.assert_allclose(top.scores, want["scores"], atol=1e-5)
        video = VideoEndpointClient(process.address)
        assert video.classify_file(family_video, top_k=2).classes == want["classes"]
        frames, _ = _frames(family_video)  # decoded frames posted: sampled at PaddleVideo's 30 fps, as this video
        assert video.classify_frames(frames, top_k=2).classes == want["classes"]
        with make_client("v2-http", process.address, conf) as c:
            answers = c.classify_files([family_video], top_k=2)
        assert answers[0].classes == want["classes"]
        assert not any("probing" in line or "first run of" in line for line in process.lines)  # the bundle's record


# ----------------------------------------------------------------------- first loads in a child process


def test_a_model_oneDNN_refuses_loads_with_a_recorded_fallback(family_models, tmp_path, monkeypatch, capfd):
    """VideoSwin's window partition (an 8-D transpose) fails in oneDNN for real: the probe falls back."""
    from vslim.inference import PaddlePredictor
    from vslim.inference.model_info import seeded_feeds

    monkeypatch.setenv("VSLIM_HOME", str(tmp_path / "home"))
    folder = family_models["videoswin"][0]
    predictor = PaddlePredictor(folder)
    err = capfd.readouterr().err
    assert "could not construct a memory descriptor" in err and "running it with" in err
    assert "may be corrupt" not in err  # a oneDNN failure is not said to be damaged files
    assert predictor.probed["name"] != "default" and predictor.describe()["probed_settings"] == predictor.probed["name"]
    out = predictor.run_feeds(seeded_feeds(predictor.info.inputs))
    assert np.isfinite(next(iter(out.values()))).all()
    probes = list((tmp_path / "home" / "probes").glob("*.json"))
    assert len(probes) == 1
    record = json.loads(probes[0].read_text())
    reference, *tries = record["attempts"]
    assert reference["settings"]["role"] == "reference" and reference["status"] == "ok"
    assert tries[0]["status"] == "failed" and record["chosen"] == predictor.probed
    stamp = probes[0].stat().st_mtime_ns
    PaddlePredictor(folder)  # the cache answers: no second child, no second note
    err = capfd.readouterr().err
    assert probes[0].stat().st_mtime_ns == stamp and "first run of" not in err and "running it with" not in err


def test_a_signal_in_the_child_becomes_a_message_and_a_fallback(family_models, tmp_path, monkeypatch, capfd):
    """The child really dies of SIGILL (as Paddle's attention fusion does on CPUs without AVX-512)."""
    from vslim.inference import PaddlePredictor

    monkeypatch.setenv("VSLIM_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("VSLIM_PROBE_FAULT", "default")
    predictor = PaddlePredictor(family_models["timesformer"][0])
    err = capfd.readouterr().err
    assert "killed by SIGILL: an instruction this CPU lacks" in err
    assert predictor.probed["name"] == "fragile fusion passes off"
    assert "self_attention_fuse_pass" in predictor.config.deleted_passes


def test_a_configuration_that_computes_wrongly_is_refused_like_a_crash(family_models, tmp_path, monkeypatch, capfd):
    """Every configuration is held to the plain kernels' outputs on the seeded sample (oneDNN's fusions computed
    PaddleVideo's TimeSformer wrongly without an error); here the default one is made to answer 1.5x."""
    from vslim.inference import PaddlePredictor

    monkeypatch.setenv("VSLIM_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("VSLIM_PROBE_SKEW", "default")
    predictor = PaddlePredictor(family_models["movinet"][0])
    err = capfd.readouterr().err
    assert "computes the model wrongly here" in err
    assert predictor.probed["name"] == "fragile fusion passes off"
    record = json.loads(next((tmp_path / "home" / "probes").glob("*.json")).read_text())
    assert [a["status"] for a in record["attempts"]] == ["ok", "wrong", "ok"]


def test_a_model_no_configuration_can_run_is_refused_naming_each_try(family_models, tmp_path, monkeypatch, cli):
    monkeypatch.setenv("VSLIM_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("VSLIM_PROBE_FAULT", "*")
    out = tmp_path / "b"
    r = cli(
        "package",
        "--target",
        "serving",
        "--model-dir",
        family_models["movinet"][0],
        "--out",
        out,
        "--runtime",
        "paddle",
    )
    assert r.code == 2 and "cannot run" in r.err and "killed by SIGILL" in r.err and "oneDNN off" in r.err
    assert not out.exists() and not list(tmp_path.glob(".b*"))  # nothing half-written


def test_int8_refusals_name_a_missing_vnni_only_where_it_explains_them(monkeypatch):
    from vslim.inference import runtimes

    monkeypatch.setattr(runtimes, "cpu_flags", lambda: {"avx2", "fma"})
    assert "no VNNI" in runtimes.likely_cause("onnxruntime", "int8")
    assert runtimes.likely_cause("onnxruntime", "fp32") == ""
    assert runtimes.likely_cause("openvino", "int8") == ""  # its QDQ trouble is the graph's, on every ISA
    monkeypatch.setattr(runtimes, "cpu_flags", lambda: {"avx2", "avx512_vnni"})
    assert runtimes.likely_cause("onnxruntime", "int8") == ""
