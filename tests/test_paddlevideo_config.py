"""PaddleVideo's quantization YAML is read unchanged."""

import pytest

from vslim.config import load_yaml
from vslim.errors import ConfigError
from vslim.paddlevideo_config import is_paddlevideo_config, ptq_config_from_paddlevideo

# PaddleVideo's configs/recognition/pptsm/pptsm_k400_frames_uniform_quantization.yaml, verbatim.
UPSTREAM = """\
DATASET:
    batch_size: 1
    num_workers: 0
    quant:
        format: "FrameDataset"
        data_prefix: "../../data/k400/rawframes"
        file_path: "../../data/k400/val_small_frames.list"
        suffix: 'img_{:05}.jpg'

PIPELINE:
    quant:
        decode:
            name: "FrameDecoder"
        sample:
            name: "Sampler"
            num_seg: 8
            seg_len: 1
            valid_mode: True
        transform:
            - Scale:
                short_size: 256
            - CenterCrop:
                target_size: 224
            - Image2Array:
            - Normalization:
                mean: [0.485, 0.456, 0.406]
                std: [0.229, 0.224, 0.225]

inference_model_dir: "../../inference/ppTSM"
quant_output_dir: "../../inference/ppTSM/quant_model"

model_name: "ppTSM"
log_level: "INFO" #Optional, the logger level. default: "INFO"
"""


def test_upstream_yaml_translates(tmp_path):
    path = tmp_path / "deploy" / "slim" / "q.yaml"
    path.parent.mkdir(parents=True)
    path.write_text(UPSTREAM)
    data = load_yaml(path)
    assert is_paddlevideo_config(data)
    cfg = ptq_config_from_paddlevideo(path, data)
    assert cfg.algo == "KL" and cfg.batch_size == 1 and cfg.batch_nums == 10
    assert cfg.calib.format == "frames" and cfg.calib.suffix == "img_{:05}.jpg"
    assert cfg.calib.file_path.endswith("data/k400/val_small_frames.list")
    assert cfg.model_filename == "ppTSM.pdmodel" and cfg.params_filename == "ppTSM.pdiparams"
    assert cfg.preprocess.num_seg == 8 and cfg.preprocess.short_size == 256 and cfg.preprocess.target_size == 224
    assert cfg.output_dir.endswith("inference/ppTSM/quant_model")
    assert ptq_config_from_paddlevideo(path, data, algo="avg").algo == "avg"


@pytest.mark.parametrize(
    "old, new, message",
    [
        ("num_seg: 8", "num_segs: 8", r"PIPELINE.quant.sample: unknown key 'num_segs'.*did you mean 'num_seg'"),
        ("batch_size: 1", "batchsize: 1", r"DATASET: unknown key 'batchsize'"),
        ("model_name:", "modelname:", r"unknown key 'modelname'.*did you mean 'model_name'"),
        ("- CenterCrop:", "- CentreCrop:", r"transform\[1\]: unsupported transform 'CentreCrop'.*CenterCrop"),
        ('format: "FrameDataset"', 'format: "SkeletonDataset"', r"format 'SkeletonDataset' is not supported"),
    ],
)
def test_misspelt_keys_are_named(tmp_path, old, new, message):
    path = tmp_path / "q.yaml"
    path.write_text(UPSTREAM.replace(old, new))
    with pytest.raises(ConfigError, match=message):
        ptq_config_from_paddlevideo(path)
