"""The supervised loop shared by training, QAT and post-pruning fine-tuning.

AdamW with linear warm-up then cosine decay, cross entropy, evaluation after
each epoch, the best epoch's weights kept. With a checkpoint folder every epoch
is saved (weights, optimizer, history) so an interrupted run resumes where it
stopped; the caller's final output is written separately and atomically.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import paddle
import paddle.nn.functional as F

from .accuracy import topk_accuracy
from .data.lists import VideoEntry
from .data.loader import iter_batches
from .data.pipeline import ClipPipeline
from .fsio import write_json
from .progress import progress_bar

STATE_FILE = "state.json"


@dataclass
class Schedule:
    epochs: int
    batch_size: int = 16
    lr: float = 0.003
    weight_decay: float = 0.0001
    warmup_epochs: float = 1.0
    seed: int = 0
    workers: int = 2


@dataclass
class FitResult:
    best_score: float | None
    best_state: dict
    history: list[dict] = field(default_factory=list)
    resumed_from: int = 0


def lr_at(step: int, total: int, warmup: int, base: float) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return base * 0.5 * (1 + math.cos(math.pi * progress))


def evaluate_layer(
    model: paddle.nn.Layer,
    entries: Sequence[VideoEntry],
    pipeline: ClipPipeline,
    batch_size: int = 16,
    workers: int = 2,
    desc: str | None = None,
) -> np.ndarray:
    """Logits ``[N, C]`` of a dygraph model over list entries (eval mode, no grad)."""
    model.eval()
    outs = []
    with paddle.no_grad(), progress_bar(total=len(entries), desc=desc, unit="clip") as bar:
        for clips, _ in iter_batches(entries, pipeline, batch_size, workers=workers):
            outs.append(model(paddle.to_tensor(clips)).numpy())
            bar.update(len(clips))
    return np.concatenate(outs)


def accuracy(model, entries, pipeline, batch_size: int = 16) -> float:
    return topk_accuracy(evaluate_layer(model, entries, pipeline, batch_size), np.array([e.label for e in entries]))


class Checkpoints:
    """One folder holding the latest epoch's state and the best weights so far."""

    def __init__(self, folder: Path | str):
        self.folder = Path(folder)

    def _save(self, obj, name: str) -> None:
        tmp = self.folder / f".{name}.tmp"
        paddle.save(obj, str(tmp))
        os.replace(tmp, self.folder / name)

    def save(self, epoch: int, step: int, model, opt, history: list[dict], best_score: float, best_state) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self._save(model.state_dict(), "last.pdparams")
        self._save(opt.state_dict(), "last.pdopt")
        self._save(best_state, "best.pdparams")
        write_json(
            self.folder / STATE_FILE, {"epoch": epoch, "step": step, "history": history, "best_score": best_score}
        )

    def load(self, model, opt) -> tuple[int, int, list[dict], float, dict] | None:
        state_file = self.folder / STATE_FILE
        if not state_file.is_file():
            return None
        state = json.loads(state_file.read_text())
        model.set_state_dict(paddle.load(str(self.folder / "last.pdparams")))
        opt.set_state_dict(paddle.load(str(self.folder / "last.pdopt")))
        best = paddle.load(str(self.folder / "best.pdparams"), return_numpy=True)
        return state["epoch"], state["step"], state["history"], state["best_score"], best


def fit(
    model: paddle.nn.Layer,
    train_entries: Sequence[VideoEntry],
    val_entries: Sequence[VideoEntry] | None,
    pipeline: ClipPipeline,
    schedule: Schedule,
    on_epoch: Callable[[dict], None] | None = None,
    checkpoints: Checkpoints | None = None,
    desc: str = "epoch",
) -> FitResult:
    """Train ``model`` in place; returns the best epoch's weights (by val top-1, else train top-1)."""
    steps_per_epoch = math.ceil(len(train_entries) / schedule.batch_size)
    total_steps = steps_per_epoch * schedule.epochs
    warmup = int(schedule.warmup_epochs * steps_per_epoch)
    opt = paddle.optimizer.AdamW(
        learning_rate=schedule.lr, parameters=model.parameters(), weight_decay=schedule.weight_decay
    )
    history: list[dict] = []
    best_score, best_state, step, start = -1.0, None, 0, 1
    resumed = checkpoints.load(model, opt) if checkpoints else None
    if resumed:
        done, step, history, best_score, best_state = resumed
        start = done + 1
    for epoch in range(start, schedule.epochs + 1):
        model.train()
        t0 = time.perf_counter()
        losses, correct = [], 0
        batches = iter_batches(
            train_entries,
            pipeline,
            schedule.batch_size,
            train=True,
            seed=schedule.seed * 1000 + epoch,
            workers=schedule.workers,
            shuffle=True,
        )
        with progress_bar(total=len(train_entries), desc=f"{desc} {epoch}/{schedule.epochs}", unit="clip") as bar:
            for clips, labels in batches:
                opt.set_lr(lr_at(step, total_steps, warmup, schedule.lr))
                logits = model(paddle.to_tensor(clips))
                loss = F.cross_entropy(logits, paddle.to_tensor(labels[:, None]))
                loss.backward()
                opt.step()
                opt.clear_grad()
                step += 1
                losses.append(float(loss))
                correct += int((logits.numpy().argmax(-1) == labels).sum())
                bar.update(len(clips))
                bar.set_postfix(loss=f"{np.mean(losses[-10:]):.3f}")
        record = {
            "epoch": epoch,
            "loss": float(np.mean(losses)),
            "train_top1": correct / len(train_entries),
            "seconds": time.perf_counter() - t0,
        }
        if val_entries:
            record["val_top1"] = accuracy(model, val_entries, pipeline, schedule.batch_size)
        history.append(record)
        score = record.get("val_top1", record["train_top1"])
        if score >= best_score:
            best_score, best_state = score, {k: v.numpy().copy() for k, v in model.state_dict().items()}
        if checkpoints:
            checkpoints.save(epoch, step, model, opt, history, best_score, best_state)
        if on_epoch:
            on_epoch(record)
    if best_state is None:  # resumed after the last epoch had already finished
        best_state = {k: v.numpy().copy() for k, v in model.state_dict().items()}
    return FitResult(best_score if val_entries or history else None, best_state, history, start - 1)
