"""A small supervised fine-tune loop: enough to train the demo model and recover after pruning.

Not a training framework: one optimiser (AdamW, warm-up then cosine), cross
entropy, evaluation each epoch, the best weights kept. Weights are saved as
``model.pdparams`` with a ``vslim.json`` beside them, so ``vslim export`` needs no
further flags.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import paddle
import paddle.nn.functional as F

from .config import PreprocessConfig, TrainConfig
from .data.lists import read_labels, read_list
from .data.loader import iter_batches
from .data.pipeline import ClipPipeline
from .errors import DataError
from .fsio import atomic_output_dir, check_output_free, write_json
from .metrics import topk_accuracy
from .model_meta import ModelMeta, default_labels
from .models import build_model, get_arch
from .models.weights import load_weights, num_classes_of, read_state_dict
from .progress import progress_bar

WEIGHTS_FILE = "model.pdparams"


@dataclass
class TrainResult:
    output_dir: Path
    best_val_top1: Optional[float]
    history: list[dict]


def evaluate_layer(model: paddle.nn.Layer, entries, pipeline: ClipPipeline, batch_size: int = 16,
                   workers: int = 2, desc: Optional[str] = None) -> np.ndarray:
    """Logits ``[N, C]`` of a dygraph model over list entries (eval mode, no grad)."""
    model.eval()
    outs = []
    with paddle.no_grad(), progress_bar(total=len(entries), desc=desc, unit="clip") as bar:
        for clips, _ in iter_batches(entries, pipeline, batch_size, workers=workers):
            outs.append(model(paddle.to_tensor(clips)).numpy())
            bar.update(len(clips))
    return np.concatenate(outs)


def _lr_at(step: int, total: int, warmup: int, base: float) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return base * 0.5 * (1 + math.cos(math.pi * progress))


def _resolve_classes(cfg: TrainConfig, train_entries) -> list[str]:
    if cfg.labels:
        labels = read_labels(cfg.labels)
    else:
        labels_file = Path(cfg.train.file_path).parent / "labels.txt"
        n = max(e.label for e in train_entries) + 1
        labels = read_labels(labels_file) if labels_file.is_file() else default_labels(n)
    top = max(e.label for e in train_entries)
    if top >= len(labels):
        raise DataError(f"the train list uses label {top} but only {len(labels)} class names are known; "
                        "pass --labels with one name per class")
    return labels


def train(cfg: TrainConfig, on_epoch: Optional[Callable[[dict], None]] = None) -> TrainResult:
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
        skip_head = num_classes_of(state, cfg.init_weights) != len(labels)
        load_weights(model, state, str(cfg.init_weights), skip_head=skip_head)

    steps_per_epoch = math.ceil(len(train_entries) / cfg.batch_size)
    total_steps = steps_per_epoch * cfg.epochs
    warmup = int(cfg.warmup_epochs * steps_per_epoch)
    opt = paddle.optimizer.AdamW(learning_rate=cfg.lr, parameters=model.parameters(),
                                 weight_decay=cfg.weight_decay)
    history: list[dict] = []
    best = (-1.0, None)
    step = 0
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        t0 = time.perf_counter()
        losses, correct = [], 0
        batches = iter_batches(train_entries, pipeline, cfg.batch_size, train=True,
                               seed=cfg.seed * 1000 + epoch, workers=cfg.workers, shuffle=True)
        with progress_bar(total=len(train_entries), desc=f"epoch {epoch}/{cfg.epochs}", unit="clip") as bar:
            for clips, labels_np in batches:
                opt.set_lr(_lr_at(step, total_steps, warmup, cfg.lr))
                logits = model(paddle.to_tensor(clips))
                loss = F.cross_entropy(logits, paddle.to_tensor(labels_np[:, None]))
                loss.backward()
                opt.step()
                opt.clear_grad()
                step += 1
                losses.append(float(loss))
                correct += int((logits.numpy().argmax(-1) == labels_np).sum())
                bar.update(len(clips))
                bar.set_postfix(loss=f"{np.mean(losses[-10:]):.3f}")
        record = {"epoch": epoch, "loss": float(np.mean(losses)),
                  "train_top1": correct / len(train_entries), "seconds": time.perf_counter() - t0}
        if val_entries:
            logits = evaluate_layer(model, val_entries, pipeline, cfg.batch_size, cfg.workers)
            record["val_top1"] = topk_accuracy(logits, np.array([e.label for e in val_entries]), 1)
        history.append(record)
        if on_epoch:
            on_epoch(record)
        score = record.get("val_top1", record["train_top1"])
        if score >= best[0]:
            best = (score, {k: v.numpy().copy() for k, v in model.state_dict().items()})

    with atomic_output_dir(cfg.output_dir, overwrite=cfg.overwrite) as tmp:
        paddle.save(best[1], str(tmp / WEIGHTS_FILE))
        meta = ModelMeta(num_classes=len(labels), labels=labels, preprocess=pre, arch=cfg.arch,
                         training={"epochs": cfg.epochs, "best_val_top1": best[0] if val_entries else None,
                                   "train_list": str(cfg.train.file_path), "seed": cfg.seed})
        meta.save(tmp)
        write_json(tmp / "train_log.json", history)
    return TrainResult(Path(cfg.output_dir), best[0] if val_entries else None, history)
