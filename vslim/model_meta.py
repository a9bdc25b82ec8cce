"""``vslim.json``: what a model folder needs to be used without repeating flags.

Written beside every model vslim produces (trained weights, inference models,
INT8 models): architecture, labels, the preprocessing the model was trained
with, input/output names and precision. Every later stage (quantize, package,
serve, benchmark) reads it instead of asking the user again.
"""

from __future__ import annotations

import datetime as _dt
import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from . import __version__
from .config import PreprocessConfig, from_mapping, to_dict
from .data.recipes import Recipe
from .errors import ConfigError, ModelError
from .fsio import write_json

META_FILE = "vslim.json"


@dataclass
class ModelMeta:
    num_classes: int
    labels: list[str]
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    arch: str | None = None
    precision: str = "fp32"
    input_name: str | None = None
    output_name: str | None = None
    model_file: str | None = None
    params_file: str | None = None
    output_kind: str = "logits"  # clients apply softmax, as PaddleVideo's postprocess does
    # a PaddleVideo model's inference helper and its parameters (data/recipes.py); None: vslim's own pipeline
    recipe: Recipe | None = None
    preprocess_unknown: str | None = None  # why no preprocessing is known (a video cannot be classified)
    onednn_int8_ops: list[str] | None = None
    quantization: dict | None = None
    pruning: dict | None = None
    training: dict | None = None
    source: str | None = None
    vslim_version: str = __version__
    created: str = field(default_factory=lambda: _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"))

    def label_name(self, class_id: int) -> str:
        return self.labels[class_id] if 0 <= class_id < len(self.labels) else str(class_id)

    def derive(self, **changes: Any) -> ModelMeta:
        """A copy for a model made from this one (new creation time and version)."""
        return replace(
            self, vslim_version=__version__, created=_dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"), **changes
        )

    def save(self, folder: Path | str) -> Path:
        return write_json(Path(folder) / META_FILE, to_dict(self))


def default_labels(num_classes: int) -> list[str]:
    return [str(i) for i in range(num_classes)]


MODEL_FOLDER = (
    "a model folder holding the inference model (*.pdmodel + *.pdiparams, e.g. inference.pdmodel) and "
    "vslim.json, as `vslim export` writes it"
)
_MODEL_FILE_SUFFIXES = {".pdmodel", ".pdiparams", ".json", ".info"}


def check_model_folder(model_dir: Path | str) -> Path:
    """A path given as a model folder must be one; else say what it is and what is expected."""
    model_dir = Path(model_dir)
    if model_dir.is_dir():
        return model_dir
    if model_dir.exists():
        hint = ""
        if model_dir.suffix.lower() in _MODEL_FILE_SUFFIXES:
            hint = f" (this file's folder, {model_dir.parent}, may be the one)"
        elif model_dir.suffix.lower() in (".mp4", ".avi", ".mkv", ".mov", ".webm", ".flv", ".mpg", ".mpeg"):
            hint = " (a video? `vslim predict` takes it with --video)"
        raise ModelError(f"{model_dir} is a file, not a model folder; give {MODEL_FOLDER}{hint}")
    raise ModelError(f"model folder {model_dir} does not exist; give {MODEL_FOLDER}")


def load_meta(folder: Path | str) -> ModelMeta | None:
    """The folder's ``vslim.json``, or None when it has none (a model vslim did not write)."""
    path = Path(folder) / META_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelError(f"{path} is not valid JSON ({exc}); delete it or re-export the model") from exc
    try:
        meta = from_mapping(ModelMeta, data, str(path))
    except ConfigError as exc:
        raise ModelError(str(exc)) from None
    meta.preprocess.validate(str(path))
    if meta.recipe is not None:
        meta.recipe.validate(f"{path}: recipe")
    if len(meta.labels) != meta.num_classes:
        raise ModelError(f"{path}: {len(meta.labels)} labels for {meta.num_classes} classes")
    return meta
