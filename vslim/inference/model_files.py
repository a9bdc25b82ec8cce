"""Finding the model and parameter files of an inference model folder.

Paddle tools name them differently (``model``, ``inference``, ``ppTSM``,
``__model__``/``__params__``); users should not have to say which.
"""

from __future__ import annotations

from pathlib import Path
from typing import cast

from ..errors import ModelError
from ..model_meta import ModelMeta, check_model_folder, load_meta

UNREAD = object()  # find_model_files(meta=...): vslim.json not read yet

_PREFERRED = ("model", "inference", "ppTSM")


def find_model_files(
    model_dir: Path | str,
    model_filename: str | None = None,
    params_filename: str | None = None,
    meta: ModelMeta | None | object = UNREAD,
) -> tuple[Path, Path]:
    """``(model_file, params_file)`` of the one inference model in ``model_dir``.

    Explicit file names win; then the names in ``vslim.json``; then the only
    ``.pdmodel`` in the folder (or a conventional name among several). ``meta``: the
    folder's vslim.json when the caller has read it already (None: it has none).
    """
    model_dir = check_model_folder(model_dir)
    if model_filename:
        _plain_name(model_filename, model_dir)
        if params_filename:
            _plain_name(params_filename, model_dir)
        model = model_dir / model_filename
        params = model_dir / (params_filename or Path(model_filename).with_suffix(".pdiparams").name)
        return _check_pair(model_dir, model, params)
    # anything but the UNREAD sentinel is the caller's ModelMeta | None (the parameter's other two types)
    known = load_meta(model_dir) if meta is UNREAD else cast("ModelMeta | None", meta)
    if known and known.model_file and known.params_file:
        for name in (known.model_file, known.params_file):
            _plain_name(name, model_dir)
        pair = (model_dir / known.model_file, model_dir / known.params_file)
        return _check_pair(model_dir, *pair)
    models = sorted(model_dir.glob("*.pdmodel"))
    if not models:
        if (model_dir / "__model__").is_file():
            return _check_pair(model_dir, model_dir / "__model__", model_dir / "__params__")
        raise ModelError(
            f"model folder {model_dir} holds no .pdmodel file; point --model-dir at the folder "
            "written by `vslim export` or paddle.jit.save"
        )
    if len(models) > 1:
        preferred = [m for m in models if m.stem in _PREFERRED]
        if len(preferred) != 1:
            names = ", ".join(m.name for m in models)
            raise ModelError(f"model folder {model_dir} holds several models ({names}); keep one per folder")
        models = preferred
    model = models[0]
    return _check_pair(model_dir, model, model.with_suffix(".pdiparams"))


def _plain_name(name: str, model_dir: Path) -> None:
    """Model file names in configs must name files inside the folder, nothing else."""
    if not name or "/" in name or "\\" in name or name in (".", "..") or Path(name).is_absolute():
        raise ModelError(
            f"model folder {model_dir} names its model file {name!r}: only a plain file name inside "
            "the folder is allowed"
        )


def _check_pair(model_dir: Path, model: Path, params: Path) -> tuple[Path, Path]:
    if not model.is_file():
        raise ModelError(f"model folder {model_dir} lacks its model file {model.name}")
    if not params.is_file():
        raise ModelError(
            f"model folder {model_dir} has {model.name} but no parameters file {params.name}; "
            "copy the whole folder written by the exporter"
        )
    return model, params
