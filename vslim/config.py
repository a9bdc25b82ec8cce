"""The configurations every feature shares (clip pipeline, list files, training, the predictor), and the
one loader that fills any config dataclass.

Configs come from YAML/JSON files and from CLI flags. Both go through
:func:`from_mapping`, which rejects unknown keys by name (with a "did you mean"
hint) so a misspelt option never silently falls back to a default. Each feature owns its own
configs beside its code: ``compress/config.py``, ``serving/config.py``, ``lite/config.py``.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import yaml

from . import runtime_registry
from .errors import ConfigError

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

T = TypeVar("T", bound="DataclassInstance")

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class PreprocessConfig:
    """The PP-TSM clip pipeline: segment sampling, scale, centre crop, normalise.

    Defaults are PaddleVideo's PP-TSM K400 values. ``fixed_ratio`` follows
    PaddleVideo's ``Scale``: the long side becomes ``short_size * 4 / 3`` instead of
    keeping the aspect ratio.
    """

    num_seg: int = 8
    seg_len: int = 1
    short_size: int = 256
    target_size: int = 224
    fixed_ratio: bool = True
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def validate(self, where: str = "preprocess") -> PreprocessConfig:
        for name in ("num_seg", "seg_len", "short_size", "target_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{where}: {name} must be >= 1, got {getattr(self, name)}")
        if self.target_size > self.short_size:
            raise ConfigError(
                f"{where}: target_size {self.target_size} is larger than short_size "
                f"{self.short_size}; the centre crop must fit inside the scaled frame"
            )
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ConfigError(f"{where}: mean and std need 3 values each, std > 0")
        return self

    @property
    def frames_per_clip(self) -> int:
        return self.num_seg * self.seg_len

    def input_shape(self) -> list[int]:
        """Model input shape with a dynamic batch dimension, as PaddleVideo exports it."""
        return [-1, self.frames_per_clip, 3, self.target_size, self.target_size]


@dataclass
class ListConfig:
    """A PaddleVideo list file and how to resolve its entries.

    ``format`` is ``frames`` (``<frame_dir> <num_frames> <label>``), ``videos``
    (``<path> <label>``) or ``auto`` (decided by the number of columns).
    """

    file_path: str
    format: str = "auto"
    data_prefix: str = ""
    suffix: str = "img_{:05}.jpg"

    def validate(self, where: str = "list") -> ListConfig:
        if self.format not in ("auto", "frames", "videos"):
            raise ConfigError(f"{where}: format must be frames, videos or auto, got {self.format!r}")
        try:
            self.suffix.format(1)
        except (IndexError, KeyError, ValueError) as exc:
            raise ConfigError(
                f"{where}: suffix {self.suffix!r} is not a frame-name template like 'img_{{:05}}.jpg' ({exc})"
            ) from exc
        return self


@dataclass
class TrainConfig:
    """``vslim train``: a small fine-tune loop for demos, tests and QAT/pruning recovery.

    Defaults train ``pptsm_small`` on the synthetic set to >90% top-1 in a few
    minutes on 2 cores. ``init_weights`` starts from trained weights (the head is
    re-initialised when the class count differs).
    """

    arch: str
    train: ListConfig
    output_dir: str
    val: ListConfig | None = None
    labels: str | None = None
    init_weights: str | None = None
    epochs: int = 12
    batch_size: int = 16
    lr: float = 0.003
    weight_decay: float = 0.0001
    warmup_epochs: float = 1.0
    seed: int = 0
    preprocess: PreprocessConfig | None = None
    workers: int = 2
    resume: bool = False
    overwrite: bool = False

    def validate(self) -> TrainConfig:
        if self.epochs < 1 or self.batch_size < 1:
            raise ConfigError("epochs and batch_size must be >= 1")
        if self.lr <= 0:
            raise ConfigError(f"lr must be > 0, got {self.lr}")
        self.train.validate("train")
        if self.val is not None:
            self.val.validate("val")
        if self.preprocess is not None:
            self.preprocess.validate()
        return self


@dataclass
class PredictorConfig:
    """How to run an inference model with Paddle Inference.

    ``precision`` ``auto`` takes the model's own (from ``vslim.json``): INT8 models
    run INT8 kernels, since a quantize/dequantize model run in FP32 is ~5x slower.
    ``onednn_int8_ops`` overrides the op set recorded at quantization time.
    ``rewrite_temporal_shift`` (CPU) replaces TSM's shift op by ops oneDNN runs
    natively, in memory, with identical outputs (see inference.temporal_shift).
    """

    device: str = "cpu"
    threads: int = 2
    use_onednn: bool = True
    precision: str = "auto"
    runtime: str = "paddle"  # a row of vslim.runtime_registry, or auto: a bundle's recorded choice
    streams: int = 1  # OpenVINO: concurrent inference streams (the server's workers), each with `threads`
    use_tensorrt: bool = False
    gpu_id: int = 0
    gpu_mem_mb: int = 512
    trt_workspace_mb: int = 1024
    trt_min_subgraph_size: int = 3
    trt_max_batch_size: int = 8
    trt_dynamic_shape: bool = True
    trt_min_batch: int = 1
    trt_opt_batch: int = 1
    trt_use_static: bool = False
    trt_cache_dir: str | None = None
    onednn_int8_ops: list[str] | None = None
    onednn_cache_capacity: int = 10
    rewrite_temporal_shift: bool = True
    ir_optim: bool = True
    deleted_passes: list[str] | None = None  # Paddle IR passes turned off (a probe's fallback)
    probe: bool = True  # load a model vslim has not seen in a child process first (inference/probe.py)
    quiet: bool = True

    def validate(self) -> PredictorConfig:
        if self.device not in ("cpu", "gpu"):
            raise ConfigError(f"device must be cpu or gpu, got {self.device!r}")
        if self.precision not in ("auto", "fp32", "fp16", "bf16", "int8"):
            raise ConfigError(f"precision must be auto, fp32, fp16, bf16 or int8, got {self.precision!r}")
        if self.streams < 1:
            raise ConfigError(f"streams must be >= 1, got {self.streams}")
        runtime_registry.check_name(self.runtime)
        if self.precision == "bf16" and self.device != "cpu":
            raise ConfigError("bf16 inference is a CPU precision here; on the GPU use fp16")
        if self.use_tensorrt and self.device != "gpu":
            raise ConfigError("TensorRT runs on the GPU: pass --device gpu (or --use-gpu) with --use-tensorrt")
        if self.precision == "fp16" and self.device != "gpu":
            raise ConfigError("fp16 inference needs the GPU: use --device gpu or precision fp32/int8")
        if self.threads < 1:
            raise ConfigError(f"threads must be >= 1, got {self.threads}")
        if not 1 <= self.trt_min_batch <= self.trt_opt_batch <= self.trt_max_batch_size:
            raise ConfigError(
                "TensorRT batch range must satisfy 1 <= min <= opt <= max, got "
                f"{self.trt_min_batch} <= {self.trt_opt_batch} <= {self.trt_max_batch_size}"
            )
        return self


@dataclass
class PackageConfig:
    """What every packaging target takes (``vslim-package --target T``): a model folder in, one folder out.

    Each target's config extends it (``ServingPackageConfig``, ``LiteConfig``,
    ``OnnxConfig``), so ``vslim.packaging.package`` has one signature for all of them.
    The output folder is written under a temporary name and renamed into place.
    """

    model_dir: str
    output_dir: str
    name: str | None = None
    overwrite: bool = False
    # the PaddleVideo config a model without vslim.json was exported with: its preprocessing goes into the package
    paddlevideo_config: str | None = None


# --------------------------------------------------------------------------- loading


def suggest_key(key: str, known: list[str]) -> str:
    close = difflib.get_close_matches(key, known, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _strip_optional(tp: Any) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def _is_optional(tp: Any) -> bool:
    return typing.get_origin(tp) in (typing.Union, types.UnionType) and type(None) in typing.get_args(tp)


def _convert(value: Any, tp: Any, where: str) -> Any:
    if value is None:
        if _is_optional(tp) or tp is Any:
            return None
        raise ConfigError(f"{where}: a value is required here, got null")
    tp = _strip_optional(tp)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):  # a type hint: a dataclass type, never an instance
        if isinstance(value, tp):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
        return from_mapping(tp, value, where)
    origin = typing.get_origin(tp)
    if origin in (list, tuple):
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        args = typing.get_args(tp)
        item_tp = args[0] if args else Any
        items = [_convert(v, item_tp, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if tp in (int, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ConfigError(f"{where}: expected a (finite) number, got {value!r}")
        if tp is int and float(value) != int(value):
            raise ConfigError(f"{where}: expected a whole number, got {value!r}")
        return tp(value)
    if tp is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ConfigError(f"{where}: expected text, got {value!r}")
        return str(value)
    return value


def from_mapping(cls: type[T], data: Mapping[str, Any], where: str = "config") -> T:
    """Build dataclass ``cls`` from ``data``; unknown or missing keys are named in the error."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping of options, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = [k for k in data if k not in fields]
    if unknown:
        key = unknown[0]
        raise ConfigError(
            f"{where}: unknown key {key!r}{suggest_key(str(key), list(fields))}; known keys: {', '.join(fields)}"
        )
    kwargs = {}
    for name, f in fields.items():
        if name in data:
            kwargs[name] = _convert(data[name], hints[name], f"{where}.{name}")
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{where}: missing required key {name!r}")
    return cls(**kwargs)


def load_yaml(path: Path | str) -> dict:
    """Read a YAML (or JSON) mapping, turning syntax errors into a message with the line."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path} is not a UTF-8 text file: {exc}") from exc
    if data is None:
        raise ConfigError(f"{path} is empty; it needs a mapping of options")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of options, got {type(data).__name__}")
    return data


def to_dict(obj: Any) -> Any:
    """Plain JSON-able form of a config dataclass (tuples become lists)."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    return obj
