"""Video data: list formats, sampling, decoding, transforms, synthetic set."""

import cv2
import numpy as np
import pytest

from vslim.config import ListConfig, PreprocessConfig
from vslim.data import ClipPipeline, read_list
from vslim.data import transforms as T
from vslim.data.decode import PyAVReader, VideoReader, open_video
from vslim.data.sampling import segment_indices
from vslim.data.synth import CLASSES, SynthConfig, generate, render_clip
from vslim.errors import ConfigError, DataError


def write_video(path, frames, fps=10):
    h, w = frames.shape[1:3]
    wr = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    for f in frames:
        wr.write(np.ascontiguousarray(f[:, :, ::-1]))
    wr.release()
    return path


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory):
    cfg = SynthConfig(seed=3, num_train=10, num_val=4, num_calib=2, num_frames=16)
    return generate(tmp_path_factory.mktemp("tiny") / "set", cfg), cfg


# ---------------------------------------------------------------- lists


def test_lists_in_both_formats(tiny_set):
    root, cfg = tiny_set
    videos = read_list(ListConfig(str(root / "val.list")))
    frames = read_list(ListConfig(str(root / "val_frames.list")))
    assert len(videos) == len(frames) == cfg.num_val
    assert not videos[0].is_frames and frames[0].is_frames and frames[0].num_frames == 16
    assert [e.label for e in videos] == [e.label for e in frames]
    assert videos[0].path.is_file() and frames[0].path.is_dir()


def test_data_prefix_resolves_entries(tmp_path, tiny_set):
    root, _ = tiny_set
    lst = tmp_path / "mine.list"
    lst.write_text("videos/val/" + sorted((root / "videos" / "val").iterdir())[0].name + " 0\n")
    entries = read_list(ListConfig(str(lst), data_prefix=str(root)))
    assert entries[0].path.is_file()


@pytest.mark.parametrize(
    "content, message",
    [
        ("", "has no entries"),
        ("# only a comment\n\n", "has no entries"),
        ("a.mp4 0\nb.mp4\n", r":2: a video list line is"),
        ("dir 8 x\n", r":1: label must be a whole number, got 'x'"),
        ("dir eight 1\n", r":1: num_frames must be a whole number"),
        ("dir 0 1\n", r":1: num_frames must be >= 1"),
        ("a.mp4 -1\n", r":1: label must be >= 0"),
        ("one two three four\n", r":1: expected"),
    ],
)
def test_malformed_lists_name_file_and_line(tmp_path, content, message):
    lst = tmp_path / "bad.list"
    lst.write_text(content)
    with pytest.raises(DataError, match=message):
        read_list(ListConfig(str(lst)))


def test_missing_list_file(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        read_list(ListConfig(str(tmp_path / "none.list")))


# ---------------------------------------------------------------- sampling


def test_eval_sampling_takes_segment_centres_like_paddlevideo():
    # 32 frames, 8 segments: average_dur 4, centre offset (4 - 1) // 2 = 1
    assert segment_indices(32, 8).tolist() == [1, 5, 9, 13, 17, 21, 25, 29]
    assert segment_indices(8, 8).tolist() == list(range(8))
    assert segment_indices(5, 8).tolist() == [0, 1, 2, 3, 4, 0, 1, 2]  # short clips wrap
    assert segment_indices(32, 4, seg_len=2).tolist() == [3, 4, 11, 12, 19, 20, 27, 28]


def test_train_sampling_stays_inside_segments():
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(50):
        idx = segment_indices(32, 8, train=True, rng=rng)
        assert all(4 * i <= v < 4 * (i + 1) for i, v in enumerate(idx))
        seen.add(tuple(idx))
    assert len(seen) > 1


# ---------------------------------------------------------------- decoding


def test_seeking_reader_returns_the_same_frames_as_full_decoding(tmp_path):
    frames = render_clip(0, np.random.default_rng(1), 60, 64, 80)
    path = tmp_path / "clip.mp4"
    write_video(path, frames)
    cap = cv2.VideoCapture(str(path))
    decoded = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        decoded.append(f[:, :, ::-1])
    wanted = [0, 3, 17, 18, 40, 59, 5]
    for reader_class in (VideoReader, PyAVReader):
        with reader_class(path) as reader:
            assert reader.num_frames == 60
            got = reader.read(wanted)
        np.testing.assert_array_equal(got, np.stack([decoded[i] for i in wanted]), err_msg=reader_class.__name__)


def test_both_decoders_give_the_same_frames_for_any_indices(tmp_path):
    """PyAV's exact key-frame seeks against OpenCV: any order, repeats, across GOP boundaries, out of range."""
    path = write_video(tmp_path / "long.mp4", render_clip(3, np.random.default_rng(1), 150, 48, 64))
    rng = np.random.default_rng(0)
    with VideoReader(path) as cv_reader, PyAVReader(path) as av_reader:
        assert cv_reader.num_frames == av_reader.num_frames == 150
        for _ in range(25):
            wanted = rng.integers(0, 150, size=int(rng.integers(1, 12))).tolist()
            np.testing.assert_array_equal(av_reader.read(wanted), cv_reader.read(wanted), err_msg=str(wanted))
        np.testing.assert_array_equal(av_reader.read([149, 200]), av_reader.read([149, 149]))


def test_decoder_choice(tmp_path):
    path = write_video(tmp_path / "c.mp4", render_clip(0, np.random.default_rng(0), 12, 48, 64))
    for decoder, expected in (("auto", PyAVReader), ("pyav", PyAVReader), ("opencv", VideoReader)):
        with open_video(path, decoder) as reader:
            assert type(reader) is expected and reader.decoder == ("opencv" if expected is VideoReader else "pyav")
    with pytest.raises(ConfigError, match="unknown video decoder 'ffmpeg'"):
        open_video(path, "ffmpeg")


@pytest.mark.parametrize("reader_class", [VideoReader, PyAVReader])
def test_undecodable_and_missing_videos(tmp_path, reader_class):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video at all" * 100)
    with pytest.raises(DataError, match=r"bad.mp4 cannot be decoded: it is a text file \(it starts with 'not a"):
        reader_class(bad)
    bad.write_bytes(b"\x00\x01" * 500)
    with pytest.raises(
        DataError,
        match=r"bad.mp4 cannot be decoded: the file is not a video container FFmpeg can "
        r"read \(Invalid data found when processing input\)",
    ):
        reader_class(bad)
    with pytest.raises(DataError, match="does not exist"):
        reader_class(tmp_path / "missing.mp4")
    truncated = tmp_path / "cut.mp4"
    write_video(tmp_path / "whole.mp4", render_clip(0, np.random.default_rng(0), 60, 48, 64))
    truncated.write_bytes((tmp_path / "whole.mp4").read_bytes()[:3000])
    with pytest.raises(DataError, match="cut.mp4"):  # OpenCV's mp4 writer puts the index at the end
        with reader_class(truncated) as reader:
            reader.read(range(reader.num_frames))


def test_frame_folder_with_too_few_frames(tmp_path, tiny_set):
    root, _ = tiny_set
    lst = tmp_path / "frames.list"
    folder = sorted((root / "rawframes" / "val").iterdir())[0]
    lst.write_text(f"{folder} 64 0\n")  # the folder holds 16 frames
    entry = read_list(ListConfig(str(lst)))[0]
    pipe = ClipPipeline(PreprocessConfig(short_size=72, target_size=64))
    with pytest.raises(DataError, match=r"frames.list:1: .*too few frames: img_000\d\d.jpg is missing"):
        pipe.load(entry)


def test_list_entry_with_missing_or_broken_video(tmp_path):
    (tmp_path / "broken.mp4").write_bytes(b"\x00" * 1000)
    lst = tmp_path / "v.list"
    lst.write_text("missing.mp4 0\nbroken.mp4 1\n")
    entries = read_list(ListConfig(str(lst)))
    pipe = ClipPipeline(PreprocessConfig(short_size=72, target_size=64))
    with pytest.raises(DataError, match=r"v.list:1: video .*missing.mp4 does not exist"):
        pipe.load(entries[0])
    with pytest.raises(DataError, match=r"v.list:2: .*broken.mp4 cannot be decoded: the file is not a video container"):
        pipe.load(entries[1])


def test_frame_files_and_video_give_nearly_the_same_clip(tiny_set):
    root, _ = tiny_set
    pipe = ClipPipeline(PreprocessConfig(short_size=72, target_size=64))
    v = pipe.load(read_list(ListConfig(str(root / "val.list")))[1])
    f = pipe.load(read_list(ListConfig(str(root / "val_frames.list")))[1])
    assert v.shape == f.shape == (8, 3, 64, 64)
    assert np.abs(v - f).mean() < 0.1  # mp4 vs jpeg compression only


# ---------------------------------------------------------------- transforms


def test_scale_follows_paddlevideo_sizes():
    assert T.scaled_size(240, 320, 256, fixed_ratio=True) == (256, 341)
    assert T.scaled_size(320, 240, 256, fixed_ratio=True) == (341, 256)
    assert T.scaled_size(240, 400, 256, fixed_ratio=False) == (256, 426)


def test_clip_resize_equals_per_frame_opencv_resize():
    frames = np.random.default_rng(0).integers(0, 255, (8, 50, 70, 3), dtype=np.uint8)
    got = T.scale_short_side(frames, 64)
    ref = np.stack([cv2.resize(f, (85, 64), interpolation=cv2.INTER_LINEAR) for f in frames])
    np.testing.assert_array_equal(got, ref)


def test_normalisation_matches_the_formula():
    frames = np.random.default_rng(0).integers(0, 255, (2, 4, 4, 3), dtype=np.uint8)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    got = T.normalize_to_tchw(frames, mean, std)
    ref = ((frames / 255.0 - np.array(mean)) / np.array(std)).transpose(0, 3, 1, 2)
    assert got.dtype == np.float32 and got.shape == (2, 3, 4, 4)
    np.testing.assert_allclose(got, ref, atol=1e-5)


def test_center_crop_offsets_round_like_paddlevideo():
    assert T.crop_offsets(256, 341, 224) == (16, 58)
    frames = np.zeros((1, 256, 341, 3), np.uint8)
    assert T.center_crop(frames, 224).shape == (1, 224, 224, 3)


def test_pipeline_rejects_bad_frame_arrays():
    pipe = ClipPipeline(PreprocessConfig(short_size=72, target_size=64))
    with pytest.raises(DataError, match=r"\[T, H, W, 3\]"):
        pipe.from_frames(np.zeros((4, 32, 32), np.uint8))
    with pytest.raises(DataError, match="uint8"):
        pipe.from_frames(np.zeros((4, 32, 32, 3), np.float32))


# ---------------------------------------------------------------- synthetic set


def test_synthetic_set_is_deterministic_and_balanced(tmp_path, tiny_set):
    root, cfg = tiny_set
    again = generate(tmp_path / "again", cfg)
    for name in ("train.list", "val_frames.list", "labels.txt"):
        assert (root / name).read_text() == (again / name).read_text()
    a = sorted((root / "rawframes" / "train").iterdir())[3] / "img_00005.jpg"
    b = again / a.relative_to(root)
    assert a.read_bytes() == b.read_bytes()
    labels = [int(ln.split()[-1]) for ln in (root / "train.list").read_text().splitlines()]
    assert sorted(set(labels)) == list(range(len(CLASSES)))
    assert (root / "labels.txt").read_text().split() == list(CLASSES)
    assert (root / "demo.mp4").is_file()


def _mover_masks(clip):
    """Pixels that differ from the temporal median (background + static distractor)."""
    clip = clip.astype(int)
    background = np.median(clip, axis=0)
    return np.abs(clip - background).sum(-1) > 60


@pytest.mark.parametrize(
    "name, axis, sign", [("move_right", 1, 1), ("move_left", 1, -1), ("move_down", 0, 1), ("move_up", 0, -1)]
)
def test_class_is_set_by_the_motion(name, axis, sign):
    for seed in range(3):
        masks = _mover_masks(render_clip(CLASSES.index(name), np.random.default_rng(seed), 16, 64, 80))
        centres = [np.nonzero(m)[axis].mean() for m in masks[[0, -1]]]
        assert sign * (centres[1] - centres[0]) > 5


def test_grow_and_shrink_change_the_area():
    for name, sign in (("grow", 1), ("shrink", -1)):
        masks = _mover_masks(render_clip(CLASSES.index(name), np.random.default_rng(0), 16, 64, 80))
        assert sign * (int(masks[-1].sum()) - int(masks[0].sum())) > 100


def _encode_with_pyav(path, frames, codec, fmt=None, options=None, bframes=None):
    import av

    with av.open(str(path), "w", format=fmt) as container:
        stream = container.add_stream(codec, rate=25)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        stream.options = options or {}
        if bframes is not None:
            stream.codec_context.gop_size, stream.codec_context.max_b_frames = 12, bframes
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


@pytest.mark.parametrize(
    "name, codec, fmt, options, bframes",
    [
        ("h264_bframes.mp4", "libx264", None, {"bf": "3", "x264-params": "keyint=12:scenecut=0"}, None),
        ("h264_bframes.mkv", "libx264", None, {"bf": "3", "x264-params": "keyint=12:scenecut=0"}, None),
        ("h264_bframes.avi", "libx264", None, {"bf": "3", "x264-params": "keyint=12:scenecut=0"}, None),
        ("h264_bframes.ts", "libx264", "mpegts", {"bf": "3", "x264-params": "keyint=12:scenecut=0"}, None),
        ("mpeg2.mpg", "mpeg2video", "mpeg", None, 2),
    ],
)
def test_both_decoders_land_on_the_right_frame_in_every_container(tmp_path, name, codec, fmt, options, bframes):
    """B-frames, open GOPs and index-less containers (MPEG-TS/PS) are where seeking readers go wrong."""
    import av

    path = _encode_with_pyav(
        tmp_path / name, render_clip(3, np.random.default_rng(1), 60, 48, 64), codec, fmt, options, bframes
    )
    with av.open(str(path)) as container:
        truth = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    rng = np.random.default_rng(0)
    for reader_class in (PyAVReader, VideoReader):
        with reader_class(path) as reader:
            assert reader.num_frames == len(truth) == 60, reader_class.__name__
            for _ in range(6):
                wanted = rng.integers(0, 60, size=8).tolist()
                np.testing.assert_array_equal(
                    reader.read(wanted),
                    np.stack([truth[i] for i in wanted]),
                    err_msg=f"{reader_class.__name__} {wanted}",
                )


def test_elongated_frames_are_refused_before_scaling():
    """Found in review: a 2x4000 frame scaled to a 256 short side would allocate 256x512,000 pixels per frame."""
    pipe = ClipPipeline(PreprocessConfig(short_size=256, target_size=224, fixed_ratio=False))
    with pytest.raises(DataError, match="too elongated"):
        pipe.from_frames(np.zeros((2, 2, 4000, 3), np.uint8))
    assert pipe.from_frames(np.zeros((2, 90, 1440, 3), np.uint8)).shape == (8, 3, 224, 224)  # 16:1 still passes
