"""Every entry point meets bad input with a message naming the problem, a non-zero exit, no partial output."""

import shutil

import numpy as np
import pytest

from vslim.config import PredictorConfig
from vslim.errors import InferenceError
from vslim.inference import PaddlePredictor


@pytest.fixture(scope="module")
def random_small(tmp_path_factory):
    from vslim.export import export_model

    return export_model(None, tmp_path_factory.mktemp("rand") / "small", arch="pptsm_small", num_classes=10)


@pytest.fixture(scope="module")
def clips_dir(tmp_path_factory):
    from vslim.data.synth import SynthConfig, generate

    return generate(
        tmp_path_factory.mktemp("d") / "set", SynthConfig(num_train=2, num_val=2, num_calib=2, num_frames=16)
    )


def _ptq(cli, model, calib, out, *extra):
    return cli(
        "compress",
        "ptq",
        "--model-dir",
        model,
        "--calib-list",
        calib,
        "--out",
        out,
        "--algo",
        "avg",
        "--no-latency",
        *extra,
    )


def test_missing_model_folder(cli, tmp_path, clips_dir):
    r = cli("predict", "--model-dir", tmp_path / "nope", "-i", clips_dir / "demo.mp4")
    assert r.code == 2 and "model folder" in r.err and "does not exist" in r.err
    assert "Traceback" not in r.err


def test_folder_without_a_model(cli, tmp_path, clips_dir):
    r = cli("predict", "--model-dir", tmp_path, "-i", clips_dir / "demo.mp4")
    assert r.code == 2 and "holds no .pdmodel" in r.err


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda d: (d / "model.pdmodel").write_bytes(b"garbage"), "is not a Paddle inference program"),
        (
            lambda d: (d / "model.pdmodel").write_bytes((d / "model.pdmodel").read_bytes()[:5000]),
            "is not a Paddle inference program",
        ),
        (lambda d: (d / "model.pdiparams").write_bytes((d / "model.pdiparams").read_bytes()[:999]), "could not load"),
        (lambda d: (d / "model.pdiparams").unlink(), "no parameters file model.pdiparams"),
        (lambda d: (d / "vslim.json").write_text("{not json"), "vslim.json is not valid JSON"),
    ],
)
def test_corrupt_model_folder(cli, tmp_path, random_small, clips_dir, damage, message):
    broken = tmp_path / "broken"
    shutil.copytree(random_small, broken)
    damage(broken)
    r = cli("predict", "--model-dir", broken, "-i", clips_dir / "demo.mp4")
    assert r.code == 2, r.err
    assert message in r.err and "Traceback" not in r.err


@pytest.mark.parametrize(
    "content, message",
    [
        ("", "has no entries"),
        ("videos/a.mp4\n", r"calib.list:1: .*'<frame_dir> <num_frames> <label>' or '<video> <label>'"),
        ("videos/val/x.mp4 zero\n", r"calib.list:1: label must be a whole number"),
    ],
)
def test_empty_or_malformed_calibration_list(cli, tmp_path, random_small, content, message):
    lst = tmp_path / "calib.list"
    lst.write_text(content)
    out = tmp_path / "int8"
    r = _ptq(cli, random_small, lst, out)
    assert r.code == 2
    import re

    assert re.search(message, r.err), r.err
    assert not out.exists() and [p.name for p in tmp_path.iterdir()] == ["calib.list"]


def test_list_entries_that_cannot_be_read(cli, tmp_path, random_small, clips_dir):
    (tmp_path / "broken.mp4").write_bytes(b"\x00\x01" * 5000)
    frames = sorted((clips_dir / "rawframes" / "calib").iterdir())[0]
    cases = {
        "missing.mp4 0": r"calib.list:1: video .*missing.mp4 does not exist",
        "broken.mp4 0": r"calib.list:1: .*broken.mp4 cannot be decoded: the file is not a video container",
        f"{frames} 40 0": r"calib.list:1: frame folder .* has too few frames: img_000\d\d.jpg is missing",
    }
    import re

    for line, message in cases.items():
        lst = tmp_path / "calib.list"
        lst.write_text(line + "\n")
        out = tmp_path / "int8"
        r = _ptq(cli, random_small, lst, out)
        assert r.code == 2 and re.search(message, r.err), (line, r.err)
        assert not out.exists()


def test_yaml_with_misspelt_key(cli, tmp_path, random_small, clips_dir):
    cfg = tmp_path / "ptq.yaml"
    cfg.write_text(
        f"model_dir: {random_small}\noutput_dir: {tmp_path / 'o'}\n"
        f"calib: {{file_path: {clips_dir / 'calib.list'}}}\nalgorithm: avg\n"
    )
    r = cli("compress", "ptq", "-c", cfg)
    assert r.code == 2 and "unknown key 'algorithm'" in r.err and "did you mean 'algo'" in r.err
    assert not (tmp_path / "o").exists()


def test_wrong_input_shape_is_named(random_small):
    pred = PaddlePredictor(random_small, PredictorConfig())
    with pytest.raises(InferenceError, match=r"shape \[1, 4, 3, 64, 64\] but the model expects \[-1, 8, 3, 64, 64\]"):
        pred.run(np.zeros((1, 4, 3, 64, 64), np.float32))
    with pytest.raises(InferenceError, match="dtype int64"):
        pred.run(np.zeros((1, 8, 3, 64, 64), np.int64))
    with pytest.raises(InferenceError, match="empty batch"):
        pred.run(np.zeros((0, 8, 3, 64, 64), np.float32))


def test_preprocessing_that_does_not_fit_the_model(cli, tmp_path, random_small, clips_dir):
    cfg = tmp_path / "ptq.yaml"
    cfg.write_text(
        f"model_dir: {random_small}\noutput_dir: {tmp_path / 'o'}\n"
        f"calib: {{file_path: {clips_dir / 'calib.list'}}}\nalgo: avg\n"
        "preprocess: {short_size: 96, target_size: 80}\n"
    )
    r = cli("compress", "ptq", "-c", cfg)
    assert r.code == 2 and "calibration clips have shape [8, 3, 80, 80] but the model takes [8, 3, 64, 64]" in r.err


def test_existing_output_is_not_overwritten(cli, tmp_path, random_small, clips_dir):
    out = tmp_path / "exists"
    out.mkdir()
    r = _ptq(cli, random_small, clips_dir / "calib.list", out)
    assert r.code == 2 and "already exists" in r.err and "--overwrite" in r.err
    r = cli("export", "--random-init", "--arch", "pptsm_small", "--num-classes", "3", "--out", out)
    assert r.code == 2 and "already exists" in r.err


def test_weights_for_another_architecture(cli, tmp_path):
    import paddle

    from vslim.models import build_model

    w = tmp_path / "small.pdparams"
    paddle.save(build_model("pptsm_small", 10).state_dict(), str(w))
    r = cli("export", "--weights", w, "--arch", "pptsm_r50", "--out", tmp_path / "o")
    assert r.code == 2 and "does not match the architecture" in r.err and "'backbone." in r.err
    assert not (tmp_path / "o").exists()


def test_gpu_without_cuda_says_what_to_install(random_small):
    import paddle

    if paddle.device.is_compiled_with_cuda():
        pytest.skip("this Paddle has CUDA")
    with pytest.raises(InferenceError, match="paddlepaddle-gpu==2.6.2"):
        PaddlePredictor(random_small, PredictorConfig(device="gpu"))
    with pytest.raises(InferenceError, match="no CUDA"):
        PaddlePredictor(random_small, PredictorConfig(device="gpu", use_tensorrt=True, precision="fp16"))


def test_unknown_architecture_and_bad_flags(cli, tmp_path):
    r = cli("export", "--random-init", "--arch", "pptsm_r18", "--num-classes", "3", "--out", tmp_path / "o")
    assert r.code == 2 and "unknown architecture 'pptsm_r18'" in r.err
    r = cli("compress", "ptq", "--model-dir", tmp_path)
    assert r.code == 2 and "--calib-list" in r.err


def test_an_unexpected_failure_is_reported_as_a_bug_not_a_traceback(capsys):
    """A library exception no vslim check anticipated: one clear line, exit 1; --debug re-raises it."""
    import argparse

    from vslim.cli.main import run

    def broken(args):
        raise ValueError("The size of input is too big")

    parser = argparse.ArgumentParser(prog="vslim")
    parser.add_argument("--debug", action="store_true")
    parser.set_defaults(handler=broken)
    assert run(parser, []) == 1
    err = capsys.readouterr().err
    assert "vslim: internal error: ValueError: The size of input is too big" in err and "--debug" in err
    assert "Traceback" not in err
    with pytest.raises(ValueError):
        run(parser, ["--debug"])
