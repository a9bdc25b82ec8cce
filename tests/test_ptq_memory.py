"""PTQ's memory is one batch, not the calibration set: large clips (PP-TSN's 250 images) run one at a time
and a large set is kept on disk."""

import numpy as np
import pytest

from vslim.compress import ptq
from vslim.data import clip_store
from vslim.data.clip_store import ClipStore, bounded_batch


def test_batches_are_bounded_by_images_not_clips():
    assert bounded_batch(4, (8, 3, 224, 224)) == 4  # PP-TSM: the configured batch
    assert bounded_batch(4, (250, 3, 224, 224)) == 1  # PP-TSN: 25 segments x TenCrop run alone
    assert bounded_batch(4, (3, 24, 224, 224)) == 4  # TimeSformer: 24 frames x 3 crops
    assert bounded_batch(64, (8, 3, 224, 224)) == 16
    assert bounded_batch(4, (-1, 3, 224, 224)) == 4  # a dynamic dimension: the configured batch


def test_a_large_calibration_set_is_kept_on_disk_and_reads_back_the_same(monkeypatch):
    monkeypatch.setattr(clip_store, "IN_MEMORY_BYTES", 3 * 8 * 3 * 4 * 4 * 4)  # three clips' worth
    rng = np.random.default_rng(0)
    clips = rng.standard_normal((7, 8, 3, 4, 4)).astype(np.float32)
    store = ClipStore()
    store.append(clips[:2])
    assert not store.on_disk
    store.append(clips[2:])
    assert store.on_disk and len(store) == 7 and store.shape == clips.shape
    np.testing.assert_array_equal(store[:], clips)
    np.testing.assert_array_equal(store[2:5], clips[2:5])
    np.testing.assert_array_equal(store[-1], clips[-1])
    assert store[7:].shape == (0, 8, 3, 4, 4)
    with pytest.raises(IndexError):
        store[7]


@pytest.mark.slow
def test_ptq_with_bounded_batches_and_clips_on_disk(fp32_small, synth_data, tmp_path, monkeypatch):
    """The real calibration, PaddleSlim's data loader included, reading clips back from disk one at a time."""
    from vslim.compress.config import PTQConfig
    from vslim.config import ListConfig
    from vslim.inference import inspect_model

    monkeypatch.setattr(clip_store, "MAX_BATCH_ELEMENTS", 8 * 3 * 64 * 64)  # one small clip per batch
    monkeypatch.setattr(clip_store, "IN_MEMORY_BYTES", 4 * 8 * 3 * 64 * 64 * 4)
    result = ptq.quantize(
        PTQConfig(
            model_dir=str(fp32_small),
            output_dir=str(tmp_path / "int8"),
            calib=ListConfig(str(synth_data / "calib.list")),
            algo="avg",
            batch_nums=4,
        )
    )
    report = result.report
    assert report["batch_size"] == 1 and report["clips_on_disk"] is True
    assert report["calibration_clips"] == 16
    assert inspect_model(tmp_path / "int8").quantized


@pytest.mark.slow
def test_a_many_image_clip_is_calibrated_in_chunks_with_the_same_result(synth_data, tmp_path, monkeypatch, cli):
    """A TSN-style clip (8 segments x TenCrop = 80 images) calibrated 16 images at a time equals the same
    calibration fed whole clips (a chunk of 80): with abs_max, a max over every image however grouped. The
    head after the clip's consensus is left FP32 (its ranges depend on the grouping), and the program
    declares the 80-image input again."""
    import family_models as fm
    import yaml

    from vslim.compress import image_chunks
    from vslim.compress.config import PTQConfig
    from vslim.config import ListConfig, PredictorConfig
    from vslim.inference import PaddlePredictor, inspect_model
    from vslim.inference.model_info import seeded_feeds
    from vslim.inference.program import QUANT_OP_TYPES, parse_program

    folder = fm.build("tsn", tmp_path / "tsn", name="TSN")
    config = tmp_path / "tsn.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "model_name": "TSN",
                "INFERENCE": {"name": "ppTSN_Inference_helper", "num_seg": 8, "short_size": 40, "target_size": 32},
            }
        )
    )
    assert cli("import", "--model-dir", folder, "--config", config).code == 0
    monkeypatch.setattr(clip_store, "MAX_BATCH_ELEMENTS", 80 * 3 * 32 * 32)  # one clip per batch
    results = {}
    for label, chunk in (("whole", 80), ("chunked", 16)):
        monkeypatch.setattr(ptq, "chunk_size", lambda shape, chunk=chunk: chunk)
        results[label] = ptq.quantize(
            PTQConfig(
                model_dir=str(folder),
                output_dir=str(tmp_path / label),
                calib=ListConfig(str(synth_data / "calib.list")),
                algo="abs_max",
                batch_nums=2,
            )
        )
        assert results[label].chosen.images_per_calibration_batch == chunk
    assert image_chunks.chunk_size((80, 3, 32, 32)) is None  # this small clip is calibrated whole by default
    info = inspect_model(tmp_path / "chunked")
    assert info.quantized and list(info.inputs[0].shape) == [-1, 80, 3, 32, 32]
    ops = [op.type for op in parse_program(info.model_file).blocks[0].ops]
    head = ops[ops.index("reduce_mean") :]
    assert "matmul_v2" in head and not QUANT_OP_TYPES & set(head)
    feeds = seeded_feeds(info.inputs)
    # the same settings for both: the op set is chosen by timing, and the probe's choice is per model
    chosen = results["whole"].chosen.onednn_int8_ops
    outs = {
        label: PaddlePredictor(
            tmp_path / label, PredictorConfig(threads=1, onednn_int8_ops=chosen, probe=False)
        ).run_feeds(feeds)
        for label in results
    }
    (whole,), (chunked,) = outs["whole"].values(), outs["chunked"].values()
    np.testing.assert_array_equal(chunked, whole)
