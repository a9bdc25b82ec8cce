"""What a model folder declares, read without running it: files, inputs, outputs, precision, metadata.

Every runtime starts from a :class:`ModelInfo`; the seeded feeds and check batch sizes here are the data
every runtime, probe and conversion check runs on, so their figures compare.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ModelError
from ..model_meta import ModelMeta, check_model_folder, default_labels, load_meta
from .model_files import find_model_files
from .program import TensorSpec, feed_specs, fetch_specs, is_quantized, parse_program


@dataclass(frozen=True)
class ModelInfo:
    """What a model folder declares: files, inputs, outputs, precision, metadata."""

    model_dir: Path
    model_file: Path
    params_file: Path
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    quantized: bool
    meta: ModelMeta

    @property
    def precision(self) -> str:
        return "int8" if self.quantized else "fp32"


def inspect_model(
    model_dir: Path | str,
    model_filename: str | None = None,
    params_filename: str | None = None,
    paddlevideo_config: Path | str | None = None,
) -> ModelInfo:
    """Read a model folder without running it; errors name the broken file.

    ``paddlevideo_config``: the PaddleVideo config the model was exported with; its preprocessing
    replaces what ``vslim.json`` (or the input shapes) say.
    """
    model_dir = check_model_folder(model_dir)
    meta = load_meta(model_dir)  # read once: find_model_files takes the file names from it
    model_file, params_file = find_model_files(model_dir, model_filename, params_filename, meta=meta)
    prog = parse_program(model_file)
    inputs, outputs = tuple(feed_specs(prog)), tuple(fetch_specs(prog))
    if not inputs or not outputs:
        raise ModelError(f"model {model_file} declares no inputs or no outputs")
    if paddlevideo_config is not None:
        meta = meta_from_paddlevideo_config(paddlevideo_config, inputs, outputs, meta.labels if meta else None)
    meta = meta or _meta_from_program(inputs, outputs)
    return ModelInfo(model_dir, model_file, params_file, inputs, outputs, is_quantized(prog), meta)


# Past 32 images of 224x224 per clip (a 250-image PP-TSN clip is far past it), memory before speed: numeric
# checks run one clip, references come from a child process, ONNX Runtime drops its arena.
LARGE_CLIP_ELEMENTS = 32 * 3 * 224 * 224


def clip_elements(inputs) -> int:
    """Elements of one clip over all the model's inputs (dynamic dimensions counted as 1)."""
    return sum(int(np.prod([d if d > 0 else 1 for d in s.shape[1:]])) for s in inputs)


def large_clip(info: ModelInfo) -> bool:
    return clip_elements(info.inputs) > LARGE_CLIP_ELEMENTS


def check_batch(inputs, preferred: int) -> int:
    """The batch a numeric check uses: ``preferred``, or 1 for a model whose one clip is already large."""
    return preferred if clip_elements(inputs) <= LARGE_CLIP_ELEMENTS else 1


def seeded_feeds(inputs, batch: int = 1, seed: int = 0) -> dict[str, np.ndarray]:
    """A seeded noise batch for every model input (dynamic dims as 1): the runtimes' and probes' check data."""
    rng = np.random.default_rng(seed)
    return {
        s.name: rng.standard_normal([batch] + [d if d > 0 else 1 for d in s.shape[1:]]).astype(s.dtype) for s in inputs
    }


def _meta_from_program(inputs, outputs) -> ModelMeta:
    """Defaults for a model vslim did not export (e.g. PaddleVideo's own ``ppTSM``): only what the input
    shapes prove (data/recipes.py ``from_inputs``); an ambiguous layout leaves the preprocessing unknown,
    with the reason, so a video is refused instead of being read wrongly."""
    from ..config import PreprocessConfig
    from ..data.recipes import from_inputs

    recipe, unknown = from_inputs(inputs)
    pre = PreprocessConfig()
    if recipe is not None:
        pre.num_seg, pre.target_size, pre.short_size = recipe.num_seg, recipe.target_size, recipe.short_size
    out = outputs[0].shape
    n = out[-1] if out and out[-1] > 0 else 1
    return ModelMeta(
        num_classes=n,
        labels=default_labels(n),
        preprocess=pre,
        recipe=recipe,
        preprocess_unknown=unknown or None,
        input_name=inputs[0].name,
        output_name=outputs[0].name,
    )


def meta_from_paddlevideo_config(path: Path | str, inputs, outputs, labels: list[str] | None = None) -> ModelMeta:
    """The metadata of a PaddleVideo export, from the config it was exported with (``INFERENCE``,
    ``model_name``, ``MODEL.head.num_classes``), checked against the model's declared inputs."""
    from ..config import PreprocessConfig, load_yaml
    from ..data.recipes import from_config

    data = load_yaml(path)
    if "INFERENCE" not in data:
        raise ModelError(
            f"{path} has no INFERENCE section: give the config the model was exported with "
            "(PaddleVideo's configs/recognition/...yaml)"
        )
    recipe = from_config(data["INFERENCE"], [s.name for s in inputs], f"{path}")
    expected = recipe.input_shapes()
    declared = [list(s.shape) for s in inputs]
    if len(expected) != len(declared) or any(
        len(e) != len(d) or any(a > 0 and b > 0 and a != b for a, b in zip(e, d)) for e, d in zip(expected, declared)
    ):
        raise ModelError(
            f"{path} describes inputs {expected} ({recipe.helper}: {recipe.describe()}), but the model "
            f"declares {declared}: it was exported with another config"
        )
    out = outputs[0].shape
    head = (data.get("MODEL") or {}).get("head") or {}
    head_classes = (
        head.get("num_classes") if isinstance(head, dict) and isinstance(head.get("num_classes"), int) else None
    )
    if out and out[-1] > 0:
        n = out[-1]
        if head_classes is not None and head_classes != n:
            raise ModelError(f"{path} says MODEL.head.num_classes {head_classes}, the model gives {n} classes")
    else:  # SlowFast's exported output has no static class dimension: the config says it
        n = head_classes or 1
    if labels is not None and len(labels) != n:
        raise ModelError(f"{len(labels)} labels given for a model of {n} classes")
    pre = PreprocessConfig(
        num_seg=recipe.num_seg,
        seg_len=recipe.seg_len,
        short_size=max(recipe.short_size, recipe.target_size),
        target_size=recipe.target_size,
    )
    return ModelMeta(
        num_classes=n,
        labels=labels or default_labels(n),
        preprocess=pre,
        recipe=recipe,
        arch=str(data.get("model_name") or "") or None,
        output_kind=recipe.family.output_kind,
        input_name=inputs[0].name,
        output_name=outputs[0].name,
        source=f"PaddleVideo config {path}",
    )
