"""Input that is not what it claims never gets a confident answer without a word.

A still image, a text file named .mp4, an empty or frameless file: refused with a DataError
naming the file and what was found (CLI exit 2; the servers' 400 / INVALID_ARGUMENT, and
they keep serving). A video shorter than the clip: sampled as PaddleVideo does (frames
repeated) and said so, in ``predict``'s JSON and text, on stderr, and in the servers'
answers. Every file is real, written here: stills by OpenCV and PIL, videos by OpenCV's
mp4 writer (as the synthetic data set's).
"""

import argparse
import json
import shutil
import struct
import urllib.error
import urllib.request

import cv2
import numpy as np
import pytest
from PIL import Image

from vslim.config import PreprocessConfig
from vslim.data import ClipPipeline
from vslim.data.decode import PyAVReader, open_video
from vslim.data.sampling import segment_indices
from vslim.data.synth import render_clip
from vslim.errors import DataError

NUM_SEG = 8  # pptsm_small's clip
ENTRY_KEYS = {"source", "classes", "scores", "labels"}


def write_mp4(path, frames, fps=10):
    h, w = frames.shape[1:3]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    assert writer.isOpened()
    for f in frames:
        writer.write(np.ascontiguousarray(f[:, :, ::-1]))
    writer.release()
    return path


@pytest.fixture(scope="module")
def clip_frames():
    return render_clip(2, np.random.default_rng(5), 16, 96, 128)


@pytest.fixture(scope="module")
def files(tmp_path_factory, clip_frames):
    d = tmp_path_factory.mktemp("inputs")
    cv2.imwrite(str(d / "still.png"), clip_frames[0][:, :, ::-1])
    Image.fromarray(clip_frames[1]).save(d / "photo.jpg", quality=90)
    gif = [Image.fromarray(f) for f in clip_frames[:3]]
    gif[0].save(d / "one.gif")
    gif[0].save(d / "three.gif", save_all=True, append_images=gif[1:], duration=100)  # an animation: a video
    shutil.copy(d / "still.png", d / "renamed_png.mp4")
    (d / "notes.mp4").write_text("hello, this is not a video\nsecond line\n")
    (d / "empty.mp4").write_bytes(b"")
    (d / "garbage.mp4").write_bytes(bytes(range(1, 256)) * 40)
    # OpenCV's writer closed before any frame: a valid mp4 container holding no video at all
    writer = cv2.VideoWriter(str(d / "frameless.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 10, (128, 96))
    writer.release()
    write_mp4(d / "one.mp4", clip_frames[:1])
    write_mp4(d / "three.mp4", clip_frames[:3])
    write_mp4(d / "full.mp4", clip_frames)
    (d / "cut.mp4").write_bytes((d / "full.mp4").read_bytes()[:3000])  # this writer puts the index at the end
    frames = d / "three_frames"
    frames.mkdir()
    for i, f in enumerate(clip_frames[:3], start=1):
        cv2.imwrite(str(frames / f"img_{i:05}.jpg"), f[:, :, ::-1])
    return d


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    from vslim.export import export_model

    return export_model(None, tmp_path_factory.mktemp("rand") / "small", arch="pptsm_small", num_classes=10)


NOT_VIDEOS = [
    ("still.png", "still.png is a still image (PNG), not a video; give a video file or a folder of frames"),
    ("photo.jpg", "photo.jpg is a still image (JPEG), not a video"),
    ("one.gif", "one.gif is a still image (GIF), not a video"),
    ("renamed_png.mp4", "renamed_png.mp4 is a still image (PNG), not a video"),
    (
        "notes.mp4",
        "notes.mp4 cannot be decoded: it is a text file (it starts with 'hello, this is not a video'), "
        "not a video (Invalid data found when processing input)",
    ),
    (
        "garbage.mp4",
        "garbage.mp4 cannot be decoded: the file is not a video container FFmpeg can read "
        "(Invalid data found when processing input)",
    ),
    (
        "cut.mp4",
        "cut.mp4 cannot be decoded: it starts like an MP4/MOV file but its index cannot be read: cut short, "
        "or still being written? (Invalid data found when processing input)",
    ),
    ("empty.mp4", "empty.mp4 is empty (0 bytes), not a video; give a video file"),
    ("frameless.mp4", "frameless.mp4 holds no video frames: it has no streams at all; give a video file"),
]


# --------------------------------------------------------------------------- refused, by the readers


@pytest.mark.parametrize("decoder", ["pyav", "opencv"])
@pytest.mark.parametrize("name, message", NOT_VIDEOS, ids=[n for n, _ in NOT_VIDEOS])
def test_both_decoders_refuse_what_is_not_a_video(files, decoder, name, message):
    with pytest.raises(DataError) as info:
        with open_video(files / name, decoder) as reader:
            reader.read([0])
    text = str(info.value)
    assert text.startswith(f"{files / name} {message.split(' ', 1)[1]}"), text
    assert "[Errno" not in text


@pytest.mark.parametrize("decoder", ["pyav", "opencv"])
def test_short_videos_still_open(files, decoder):
    for name, frames in (("one.mp4", 1), ("three.mp4", 3), ("full.mp4", 16), ("three.gif", 3)):
        with open_video(files / name, decoder) as reader:
            assert reader.num_frames == frames
            assert reader.read(range(frames)).shape == (frames, 96, 128, 3)


# --------------------------------------------------------------------------- refused, by `vslim predict`


@pytest.mark.parametrize("name, message", NOT_VIDEOS, ids=[n for n, _ in NOT_VIDEOS])
def test_predict_refuses_what_is_not_a_video(cli, model, files, name, message):
    r = cli("predict", "--model-dir", model, "--video", files / name)
    assert r.code == 2 and r.out == "", r.out
    assert f"{files / name} {message.split(' ', 1)[1]}" in r.err, r.err
    assert "Traceback" not in r.err and "[Errno" not in r.err


def test_inputs_are_checked_before_the_model_loads(cli, model, files, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(model, broken)
    params = broken / "model.pdiparams"
    params.write_bytes(params.read_bytes()[:999])  # found only when Paddle loads the weights
    for bad in (files / "still.png", files / "missing.mp4"):
        r = cli("predict", "--model-dir", broken, "--video", bad)
        assert r.code == 2 and str(bad) in r.err and "could not load" not in r.err, r.err
    r = cli("predict", "--model-dir", broken, "--video", files / "full.mp4")
    assert r.code == 2 and "could not load" in r.err, r.err  # the same model does fail once it loads


# --------------------------------------------------------------------------- too short: answered, and said so


def test_paddlevideo_indices_repeat_frames_of_short_videos():
    assert segment_indices(1, NUM_SEG).tolist() == [0] * 8
    assert segment_indices(3, NUM_SEG).tolist() == [0, 1, 2, 0, 1, 2, 0, 1]


@pytest.mark.parametrize("name, frames", [("one.mp4", 1), ("three.mp4", 3)])
def test_predict_says_a_short_video_was_padded(cli, model, files, name, frames):
    from vslim.accuracy import softmax
    from vslim.inference import PaddlePredictor

    video = files / name
    r = cli("predict", "--model-dir", model, "--video", video, "--json", "--top-k", "3")
    assert r.code == 0, r.err
    (entry,) = json.loads(r.out)["predictions"]
    assert set(entry) == ENTRY_KEYS | {"sampling"}
    note = (
        f"the video has {frames} frame{'s' if frames > 1 else ''} but the model's clip takes 8, so frames were "
        "repeated to fill it (as PaddleVideo does)"
    )
    assert entry["sampling"] == {"video_frames": frames, "clip_frames": 8, "repeated": True, "note": note}
    assert f"warning: {video}: {note}" in r.err
    # the answer is the model's on PaddleVideo's indices into the decoded frames
    pipeline = ClipPipeline(PreprocessConfig(short_size=72, target_size=64))
    with PyAVReader(video) as reader:
        decoded = reader.read(range(frames))
    clip = pipeline.transform(decoded[segment_indices(frames, NUM_SEG)])
    probs = softmax(PaddlePredictor(model).run(clip[None]))[0]
    assert entry["classes"] == np.argsort(-probs)[:3].tolist()
    np.testing.assert_allclose(entry["scores"], np.sort(probs)[::-1][:3], rtol=1e-4)

    r = cli("predict", "--model-dir", model, "-i", video)
    assert r.code == 0
    lines = r.out.splitlines()
    assert lines[0] == f"Current video file: {video}" and lines[-1] == f"\tnote: {note}"
    assert f"warning: {video}: {note}" in r.err


def test_full_videos_and_short_frame_folders(cli, model, files):
    r = cli("predict", "--model-dir", model, "--video", files / "full.mp4", "--json")
    assert r.code == 0 and "warning" not in r.err
    assert set(json.loads(r.out)["predictions"][0]) == ENTRY_KEYS
    assert "note:" not in cli("predict", "--model-dir", model, "--video", files / "full.mp4").out
    r = cli("predict", "--model-dir", model, "--video", files / "three_frames", "--json")
    assert r.code == 0, r.err
    assert json.loads(r.out)["predictions"][0]["sampling"]["video_frames"] == 3


def test_pipeline_gives_the_record_for_frames_and_videos(files, clip_frames):
    pipeline = ClipPipeline(PreprocessConfig(short_size=72, target_size=64))
    clip, sampling = pipeline.frames_clip(clip_frames[:3])
    assert sampling.video_frames == 3 and sampling.clip_frames == 8 and sampling.repeated
    np.testing.assert_array_equal(clip, pipeline.transform(clip_frames[[0, 1, 2, 0, 1, 2, 0, 1]]))
    assert pipeline.frames_clip(clip_frames)[1] is None and pipeline.video_clip(files / "full.mp4")[1] is None
    assert pipeline.video_clip(files / "one.mp4")[1].video_frames == 1


# --------------------------------------------------------------------------- the servers' video endpoints


def _post(url, body: bytes, headers=None):
    req = urllib.request.Request(
        url, data=body, headers={"Content-Type": "application/octet-stream", **(headers or {})}
    )
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def _v2_video(url, video: bytes):
    element = struct.pack("<I", len(video)) + video
    head = json.dumps(
        {
            "inputs": [
                {"name": "video", "shape": [1], "datatype": "BYTES", "parameters": {"binary_data_size": len(element)}}
            ]
        }
    ).encode()
    status, body = _post(
        f"{url}/v2/models/wrong_video/infer", head + element, {"Inference-Header-Content-Length": str(len(head))}
    )
    return status, json.loads(body)


@pytest.mark.slow
def test_server_refuses_non_videos_and_says_when_it_padded(model, files, clip_frames, tmp_path):
    import base64

    from servers import ServerProcess

    from vslim.serving.bundle import package_serving
    from vslim.serving.config import ServingPackageConfig

    bundle = package_serving(ServingPackageConfig(str(model), str(tmp_path / "bundle"), name="wrong"))
    with ServerProcess(bundle.server) as server:
        url = server.url
        for name, what in (
            ("still.png", "the posted video is a still image (PNG), not a video"),
            ("notes.mp4", "the posted video cannot be decoded: it is a text file"),
            ("frameless.mp4", "the posted video holds no video frames"),
        ):
            status, body = _post(f"{url}/video/classify", (files / name).read_bytes())
            assert status == 400 and json.loads(body)["error"].startswith(what), body
            assert "/tmp" not in json.loads(body)["error"]
            status, answer = _v2_video(url, (files / name).read_bytes())
            assert status == 400 and what in answer["error"], answer

        status, body = _post(f"{url}/video/classify?top_k=2", (files / "three.mp4").read_bytes())
        answer = json.loads(body)
        assert status == 200 and len(answer["top_k"]) == 2
        assert answer["sampling"]["video_frames"] == 3 and answer["sampling"]["repeated"] is True
        status, body = _post(f"{url}/video/classify", (files / "full.mp4").read_bytes())
        assert status == 200 and "sampling" not in json.loads(body)

        status, answer = _v2_video(url, (files / "one.mp4").read_bytes())
        outputs = {o["name"]: o for o in answer["outputs"]}
        assert status == 200 and json.loads(outputs["sampling"]["data"][0])["video_frames"] == 1
        status, answer = _v2_video(url, (files / "full.mp4").read_bytes())
        assert status == 200 and {o["name"] for o in answer["outputs"]} == {"label", "class_id", "prob"}

        short = np.ascontiguousarray(clip_frames[:3])
        body = json.dumps(
            {"key": ["frames", "frames_shape"], "value": [base64.b64encode(short.tobytes()).decode(), str(short.shape)]}
        ).encode()
        status, raw = _post(f"{url}/video/prediction", body, {"Content-Type": "application/json"})
        answer = json.loads(raw)
        assert status == 200 and answer["key"] == ["label", "prob"] and answer["sampling"]["video_frames"] == 3
        assert "frames were repeated" in server.log()


# --------------------------------------------------------------------------- model folders, `vslim info`


def test_a_file_given_as_model_folder_is_named_as_a_file(cli, model, files):
    r = cli("info", "--model-dir", files / "full.mp4")
    assert r.code == 2 and f"{files / 'full.mp4'} is a file, not a model folder" in r.err, r.err
    assert "vslim.json" in r.err and ".pdmodel" in r.err and "does not exist" not in r.err
    r = cli("predict", "--model-dir", model / "model.pdmodel", "--video", files / "full.mp4")
    assert r.code == 2 and "is a file, not a model folder" in r.err and f"{model}" in r.err
    r = cli("info", "--model-dir", files / "nope")
    assert r.code == 2 and "model folder" in r.err and "does not exist" in r.err


def test_info_prints_a_readable_view_and_json_on_request(cli, model):
    r = cli("info", "--model-dir", model)
    assert r.code == 0, r.err
    rows = dict(
        line.split(None, 1)
        if not line.startswith(("model folder", "input", "output"))
        else (line[:13].strip(), line[13:].strip())
        for line in r.out.splitlines()
    )
    assert rows["files"] == "model.pdmodel, model.pdiparams, vslim.json"
    assert rows["precision"] == "fp32" and rows["arch"] == "pptsm_small"
    assert rows["classes"].startswith("10: 0, 1, 2") and "8 segments" in rows["clip"]
    assert rows["input"].startswith("data_batch_0 [-1, 8, 3, 64, 64] float32")
    value_columns = {len(line) - len(line[line.index("  ") :].lstrip()) for line in r.out.splitlines()}
    assert len(value_columns) == 1  # values aligned
    data = json.loads(cli("info", "--model-dir", model, "--json").out)
    assert data["precision"] == "fp32" and data["meta"]["num_classes"] == 10


def test_inspection_parses_vslim_json_once(model, monkeypatch):
    import vslim.model_meta as model_meta
    from vslim.inference import inspect_model

    parsed = []
    real = model_meta.from_mapping

    def counting(cls, data, where):
        parsed.append(where)
        return real(cls, data, where)

    monkeypatch.setattr(model_meta, "from_mapping", counting)
    info = inspect_model(model)
    assert info.meta.num_classes == 10 and parsed == [str(model / "vslim.json")]


# --------------------------------------------------------------------------- flags and help


def _sub(parser, *path):
    for name in path:
        parser = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[name]
    return parser


def test_predict_flags():
    from vslim.cli.main import build_parser

    parser = build_parser()
    for flag in ("--video", "--input-file", "-i"):
        args = parser.parse_args(["predict", "--model-dir", "m", flag, "v.mp4"])
        assert args.video == "v.mp4" and args.top_k == 1 and args.device == "cpu"
    assert parser.parse_args(["predict", "--model-dir", "m", "--video", "v", "--use-gpu"]).device == "gpu"
    assert parser.parse_args(["predict", "--model-dir", "m", "--video", "v", "--device", "gpu"]).device == "gpu"
    help_text = _sub(parser, "predict").format_help()
    text = help_text[help_text.index("options:") :]  # past the usage line
    assert "--video PATH, --input-file PATH, -i PATH" in text
    for flag, default in (("--top-k K", "1"), ("--device {cpu,gpu}", "cpu"), ("--threads THREADS", "2")):
        after = " ".join(text[text.index(flag) :].split())
        assert f"(default: {default})" in after[: after.index(" --", 2)], (flag, after[:200])


@pytest.mark.parametrize("path", [("models",), ("train",), ("export",), ("predict",), ("info",), ("data", "synth")])
def test_every_parser_has_a_description_and_shows_defaults(path):
    from vslim.cli.main import build_parser

    parser = _sub(build_parser(), *path)
    assert parser.description, path
    formatter = parser._get_formatter()
    for action in parser._actions:
        if not action.option_strings or action.default is None or action.default is False or action.dest == "help":
            continue
        assert action.help, (path, action.option_strings)
        assert "default" in formatter._get_help_string(action).lower(), (path, action.option_strings)
