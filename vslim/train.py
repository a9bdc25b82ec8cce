"""A small supervised fine-tune loop: enough to train the demo model and recover after pruning.

Not a training framework: the loop in :mod:`vslim.fit` (AdamW, warm-up then
cosine, the best epoch kept, resumable). Weights are saved as ``model.pdparams``
with a ``vslim.json`` beside them, so ``vslim export`` needs no further flags.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import paddle

from .config import PreprocessConfig, TrainConfig
from .data.lists import read_labels, read_list
from .data.pipeline import ClipPipeline
from .errors import DataError
from .fit import Checkpoints, Schedule, fit
from .fsio import atomic_output_dir, check_output_free, write_json
from .model_meta import ModelMeta, default_labels
from .models import build_model, get_arch
from .models.weights import load_weights, num_classes_of, read_state_dict

WEIGHTS_FILE = "model.pdparams"


@dataclass
class TrainResult:
    output_dir: Path
    best_val_top1: float | None
    history: list[dict]


def checkpoint_dir(output_dir: Path | str) -> Path:
    """Where an interrupted run's epochs wait for ``--resume`` (removed once the output is written)."""
    output_dir = Path(output_dir)
    return output_dir.parent / f"{output_dir.name}.checkpoints"


def _resolve_classes(cfg: TrainConfig, train_entries) -> list[str]:
    if cfg.labels:
        labels = read_labels(cfg.labels)
    else:
        labels_file = Path(cfg.train.file_path).parent / "labels.txt"
        n = max(e.label for e in train_entries) + 1
        labels = read_labels(labels_file) if labels_file.is_file() else default_labels(n)
    top = max(e.label for e in train_entries)
    if top >= len(labels):
        raise DataError(
            f"the train list uses label {top} but only {len(labels)} class names are known; "
            "pass --labels with one name per class"
        )
    return labels


def train(cfg: TrainConfig, on_epoch: Callable[[dict], None] | None = None) -> TrainResult:
    """Train ``cfg.arch`` on ``cfg.train``; write ``model.pdparams`` + ``vslim.json`` atomically."""
    cfg.validate()
    check_output_free(cfg.output_dir, cfg.overwrite)
    spec = get_arch(cfg.arch)
    pre: PreprocessConfig = cfg.preprocess or spec.preprocess
    pipeline = ClipPipeline(pre)
    train_entries = read_list(cfg.train)
    val_entries = read_list(cfg.val) if cfg.val else None
    labels = _resolve_classes(cfg, train_entries)

    paddle.seed(cfg.seed)
    model = build_model(cfg.arch, len(labels), pre.num_seg)
    if cfg.init_weights:
        state = read_state_dict(cfg.init_weights)
        skip_head = num_classes_of(state, cfg.init_weights, spec.classifier) != len(labels)
        load_weights(model, state, str(cfg.init_weights), skip_head=skip_head, classifier=spec.classifier)

    ckpt = checkpoint_dir(cfg.output_dir)
    if ckpt.exists() and not cfg.resume:
        shutil.rmtree(ckpt)
    schedule = Schedule(
        epochs=cfg.epochs,
        batch_size=cfg.batch_size,
        lr=cfg.lr,
        weight_decay=cfg.weight_decay,
        warmup_epochs=cfg.warmup_epochs,
        seed=cfg.seed,
        workers=cfg.workers,
    )
    result = fit(model, train_entries, val_entries, pipeline, schedule, on_epoch, Checkpoints(ckpt))

    with atomic_output_dir(cfg.output_dir, overwrite=cfg.overwrite) as tmp:
        paddle.save(result.best_state, str(tmp / WEIGHTS_FILE))
        meta = ModelMeta(
            num_classes=len(labels),
            labels=labels,
            preprocess=pre,
            arch=cfg.arch,
            training={
                "epochs": cfg.epochs,
                "best_val_top1": result.best_score if val_entries else None,
                "train_list": str(cfg.train.file_path),
                "seed": cfg.seed,
            },
        )
        meta.save(tmp)
        write_json(tmp / "train_log.json", result.history)
    shutil.rmtree(ckpt, ignore_errors=True)
    return TrainResult(Path(cfg.output_dir), result.best_score if val_entries else None, result.history)
