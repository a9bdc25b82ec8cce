"""PaddleVideo's quantization YAML, read unchanged and turned into a :class:`PTQConfig`.

Users of PaddleVideo's ``deploy/slim/quant_post_static.py`` have files like
``pptsm_k400_frames_uniform_quantization.yaml``; ``vslim-quant -c FILE`` accepts
them as they are. Keys are checked against what PaddleVideo itself reads, so a
misspelt key is named instead of ignored. Paths resolve as upstream does
(against the working directory), falling back to the YAML's own folder.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from vslim.compress.config import PTQConfig

from .config import ConfigError, ListConfig, PreprocessConfig, load_yaml, suggest_key

TOP_KEYS = {"DATASET", "PIPELINE", "inference_model_dir", "quant_output_dir", "model_name", "log_level", "batch_nums"}
DATASET_KEYS = {"batch_size", "num_workers", "batch_nums", "quant"}
QUANT_DATA_KEYS = {"format", "data_prefix", "file_path", "suffix"}
PIPELINE_KEYS = {"decode", "sample", "transform"}
FORMATS = {"FrameDataset": "frames", "VideoDataset": "videos"}
DECODERS = {"FrameDecoder": "frames", "VideoDecoder": "videos"}
TRANSFORM_KEYS = {
    "Scale": {"short_size", "fixed_ratio", "keep_ratio", "do_round", "backend"},
    "CenterCrop": {"target_size", "do_round", "backend"},
    "Image2Array": {"transpose", "data_format"},
    "Normalization": {"mean", "std", "tensor_shape", "inplace"},
}
SAMPLE_KEYS = {"name", "num_seg", "seg_len", "valid_mode", "select_left"}


def is_paddlevideo_config(data: dict) -> bool:
    return any(k in data for k in ("PIPELINE", "DATASET", "inference_model_dir"))


def _check_keys(mapping: Any, known: set[str], where: str) -> dict:
    if not isinstance(mapping, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(mapping).__name__}")
    for key in mapping:
        if key not in known:
            raise ConfigError(
                f"{where}: unknown key {key!r}{suggest_key(str(key), sorted(known))}; "
                f"PaddleVideo reads {', '.join(sorted(known))}"
            )
    return mapping


def _require(mapping: Any, key: str, where: str) -> Any:
    if not isinstance(mapping, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(mapping).__name__}")
    if key not in mapping or mapping[key] is None:
        raise ConfigError(f"{where}: missing required key {key!r}")
    return mapping[key]


def _int(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ConfigError(f"{where}: expected a whole number, got {value!r}")
    try:
        number = float(value)
    except ValueError:
        raise ConfigError(f"{where}: expected a whole number, got {value!r}") from None
    if not math.isfinite(number) or not number.is_integer():
        raise ConfigError(f"{where}: expected a whole number, got {value!r}")
    return int(number)


def _floats(value: Any, where: str) -> tuple[float, float, float]:
    if not isinstance(value, (list, tuple)) or len(value) != 3 or any(isinstance(v, bool) for v in value):
        raise ConfigError(f"{where}: expected a list of 3 numbers, got {value!r}")
    try:
        return (float(value[0]), float(value[1]), float(value[2]))
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: expected a list of 3 numbers, got {value!r}") from None


def _text(value: Any, where: str) -> str:
    if not isinstance(value, (str, int, float)) or isinstance(value, bool):
        raise ConfigError(f"{where}: expected text, got {value!r}")
    return str(value)


def _resolve(path: str, base: Path) -> str:
    p = Path(str(path)).expanduser()
    if p.is_absolute() or p.exists():
        return str(p)
    return str(base / p)


def _preprocess(pipeline: dict, where: str) -> tuple[PreprocessConfig, str | None]:
    _check_keys(pipeline, PIPELINE_KEYS, where)
    pre = PreprocessConfig()
    decode = _check_keys(pipeline.get("decode") or {}, {"name", "backend", "mode"}, f"{where}.decode")
    decoder_name = decode.get("name")
    decoder = DECODERS.get(decoder_name) if isinstance(decoder_name, str) else None
    if decode and decoder is None:
        raise ConfigError(f"{where}.decode: unsupported decoder {decode.get('name')!r}; use {', '.join(DECODERS)}")
    sample = _check_keys(pipeline.get("sample") or {}, SAMPLE_KEYS, f"{where}.sample")
    if sample.get("name", "Sampler") != "Sampler":
        raise ConfigError(f"{where}.sample: only PaddleVideo's uniform 'Sampler' is supported, got {sample['name']!r}")
    pre.num_seg = _int(sample.get("num_seg", pre.num_seg), f"{where}.sample.num_seg")
    pre.seg_len = _int(sample.get("seg_len", pre.seg_len), f"{where}.sample.seg_len")
    transforms = pipeline.get("transform") or []
    if not isinstance(transforms, list):
        raise ConfigError(f"{where}.transform: expected a list of transform ops")
    for i, item in enumerate(transforms):
        op_where = f"{where}.transform[{i}]"
        if not isinstance(item, dict) or len(item) != 1:
            raise ConfigError(f"{op_where}: each transform is a one-key mapping like '- Scale: {{short_size: 256}}'")
        ((name, args),) = item.items()
        if name not in TRANSFORM_KEYS:
            raise ConfigError(
                f"{op_where}: unsupported transform {name!r}{suggest_key(name, sorted(TRANSFORM_KEYS))}; "
                f"supported: {', '.join(TRANSFORM_KEYS)}"
            )
        args = _check_keys(args or {}, TRANSFORM_KEYS[name], f"{op_where}.{name}")
        if name == "Scale":
            pre.short_size = _int(_require(args, "short_size", f"{op_where}.Scale"), f"{op_where}.Scale.short_size")
            pre.fixed_ratio = bool(args.get("fixed_ratio", True)) and not args.get("keep_ratio")
        elif name == "CenterCrop":
            pre.target_size = _int(
                _require(args, "target_size", f"{op_where}.CenterCrop"), f"{op_where}.CenterCrop.target_size"
            )
        elif name == "Normalization":
            pre.mean = _floats(_require(args, "mean", f"{op_where}.Normalization"), f"{op_where}.Normalization.mean")
            pre.std = _floats(_require(args, "std", f"{op_where}.Normalization"), f"{op_where}.Normalization.std")
    return pre.validate(where), decoder


def ptq_config_from_paddlevideo(path: Path | str, data: dict | None = None, **overrides) -> PTQConfig:
    """Translate PaddleVideo's quantization YAML; ``overrides`` set PTQConfig fields (e.g. ``algo``)."""
    path = Path(path)
    data = load_yaml(path) if data is None else data
    base = path.parent
    _check_keys(data, TOP_KEYS, str(path))
    dataset = _check_keys(_require(data, "DATASET", str(path)), DATASET_KEYS, f"{path}: DATASET")
    quant = _check_keys(_require(dataset, "quant", f"{path}: DATASET"), QUANT_DATA_KEYS, f"{path}: DATASET.quant")
    pipeline = _require(
        _check_keys(_require(data, "PIPELINE", str(path)), {"quant"}, f"{path}: PIPELINE"), "quant", f"{path}: PIPELINE"
    )
    pre, decoder = _preprocess(pipeline, f"{path}: PIPELINE.quant")
    fmt = quant.get("format")
    if fmt is not None and (not isinstance(fmt, str) or fmt not in FORMATS):
        raise ConfigError(f"{path}: DATASET.quant.format {fmt!r} is not supported; use {', '.join(FORMATS)}")
    list_format = (FORMATS[fmt] if fmt is not None else None) or decoder or "auto"
    calib = ListConfig(
        file_path=_resolve(_text(_require(quant, "file_path", f"{path}: DATASET.quant"), "file_path"), base),
        format=list_format,
        data_prefix=_resolve(_text(quant["data_prefix"], "data_prefix"), base) if quant.get("data_prefix") else "",
        suffix=_text(quant.get("suffix", "img_{:05}.jpg"), f"{path}: DATASET.quant.suffix"),
    )
    model_name = _text(data.get("model_name", "inference"), f"{path}: model_name")
    model_dir = _resolve(
        _text(data.get("inference_model_dir", f"./inference/{model_name}"), f"{path}: inference_model_dir"), base
    )
    output_dir = data.get("quant_output_dir")
    output_dir = (
        _resolve(_text(output_dir, f"{path}: quant_output_dir"), base)
        if output_dir
        else str(Path(model_dir) / "quant_model")
    )
    batch_nums = _int(dataset.get("batch_nums", data.get("batch_nums", 10)), f"{path}: batch_nums")
    cfg = PTQConfig(
        model_dir=model_dir,
        output_dir=output_dir,
        calib=calib,
        preprocess=pre,
        algo="KL",  # what PaddleVideo's script hard-codes; --algo overrides
        batch_size=_int(dataset.get("batch_size", 1), f"{path}: DATASET.batch_size"),
        batch_nums=batch_nums,
        model_filename=f"{model_name}.pdmodel",
        params_filename=f"{model_name}.pdiparams",
    )
    for key, value in overrides.items():
        if value is not None:
            setattr(cfg, key, value)
    return cfg.validate()
