"""``vslim export``: trained weights -> Paddle inference model + ``vslim.json``.

The exported program takes ``[N, num_seg, 3, S, S]`` float32 named
``data_batch_0`` (the feed name PaddleVideo's PP-TSM export and its Serving
configs use) and returns logits. The export is checked against the dygraph
model on a random batch before it is published.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import paddle

from .config import PreprocessConfig
from .data.lists import read_labels
from .dy2static import forget_failed_traces
from .errors import ModelError
from .fsio import atomic_output_dir, check_output_free
from .model_meta import ModelMeta, default_labels, load_meta
from .models import build_model, get_arch
from .models.weights import load_weights, num_classes_of, read_state_dict

INPUT_NAME = "data_batch_0"
MODEL_PREFIX = "model"


def export_model(
    weights: Path | str | None,
    out: Path | str,
    arch: str | None = None,
    labels: Path | str | None = None,
    num_seg: int | None = None,
    target_size: int | None = None,
    short_size: int | None = None,
    overwrite: bool = False,
    num_classes: int | None = None,
    seed: int = 0,
) -> Path:
    """Export ``weights`` to an inference model folder ``out``; flags override ``vslim.json``.

    ``weights=None`` exports randomly initialised weights (``num_classes`` needed):
    enough for speed benchmarks and toolchain checks, useless for accuracy.
    """
    check_output_free(out, overwrite)
    weights = Path(weights) if weights else None
    trained = load_meta(weights.parent) if weights and weights.is_file() else None
    arch = arch or (trained.arch if trained else None)
    if not arch:
        raise ModelError(f"no architecture known for {weights}: pass --arch (e.g. pptsm_r50)")
    spec = get_arch(arch)
    if weights:
        state = read_state_dict(weights)
        num_classes = num_classes_of(state, weights, spec.classifier)
    elif not num_classes:
        raise ModelError("a random-init export needs --num-classes")
    pre = _preprocess(trained.preprocess if trained else spec.preprocess, num_seg, target_size, short_size)
    names = _labels(labels, trained, num_classes)

    paddle.disable_static()
    paddle.seed(seed)
    model = build_model(arch, num_classes, pre.num_seg)
    if trained and trained.pruning:
        from .models.pruning import apply_plan

        apply_plan(model, trained.pruning, fold=spec.before_export)
    if weights:
        load_weights(model, state, str(weights), classifier=spec.classifier)
    model.eval()
    if spec.before_export is not None:
        spec.before_export(model)  # e.g. PP-TSMv2 folds its re-parameterised branches, as PaddleVideo exports
    clip_shape = [pre.frames_per_clip, 3, pre.target_size, pre.target_size]
    shape = [None, *clip_shape]
    static = paddle.jit.to_static(
        model, input_spec=[paddle.static.InputSpec(shape, "float32", INPUT_NAME)], full_graph=True
    )
    # a batch of 2 checks the dynamic batch; long clips (TSN's 250 images) check with 1 to bound memory
    probe = (
        np.random.default_rng(0)
        .standard_normal([2 if pre.frames_per_clip <= 32 else 1, *clip_shape])
        .astype(np.float32)
    )
    with paddle.no_grad():
        expected = model(paddle.to_tensor(probe)).numpy()

    with atomic_output_dir(out, overwrite=overwrite) as tmp:
        forget_failed_traces()
        paddle.jit.save(static, str(tmp / MODEL_PREFIX))
        from .config import PredictorConfig
        from .inference import PaddlePredictor  # after saving: reads the files just written

        # a zoo model, the configuration CI tests: no probe (vslim.json is written below)
        predictor = PaddlePredictor(tmp, PredictorConfig(use_onednn=False, threads=1, probe=False))
        got = predictor.run(probe)
        err = float(np.abs(got - expected).max() / max(1e-6, np.abs(expected).max()))
        if err > 1e-3:
            raise ModelError(f"exported model disagrees with the trained model (relative error {err:.2e})")
        meta = ModelMeta(
            num_classes=num_classes,
            labels=names,
            preprocess=pre,
            arch=arch,
            precision="fp32",
            input_name=predictor.input_names[0],
            output_name=predictor.output_names[0],
            model_file=f"{MODEL_PREFIX}.pdmodel",
            params_file=f"{MODEL_PREFIX}.pdiparams",
            source=str(weights) if weights else "random init",
            training=trained.training if trained else None,
            pruning=trained.pruning if trained else None,
        )
        meta.save(tmp)
    return Path(out)


def _preprocess(base: PreprocessConfig, num_seg, target_size, short_size) -> PreprocessConfig:
    changes = {
        k: v
        for k, v in (("num_seg", num_seg), ("target_size", target_size), ("short_size", short_size))
        if v is not None
    }
    if "target_size" in changes and "short_size" not in changes:
        changes["short_size"] = max(changes["target_size"], round(changes["target_size"] * 256 / 224))
    return replace(base, **changes).validate()


def _labels(labels, trained: ModelMeta | None, num_classes: int) -> list[str]:
    if labels:
        names = read_labels(labels)
    elif trained:
        names = trained.labels
    else:
        names = default_labels(num_classes)
    if len(names) != num_classes:
        raise ModelError(f"{len(names)} labels given but the weights have {num_classes} classes")
    return names
