"""Evaluating one or more models on the same clips, decoded once.

Comparisons (FP32 vs INT8, PTQ algorithms, pruned vs not) are only honest when
every model sees identical inputs, and decoding dominates evaluation time on
small models; so each batch is decoded once and fed to every model.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from .accuracy import cosine_similarity, softmax, top1_agreement, topk_accuracy
from .data.lists import VideoEntry
from .data.loader import iter_batches
from .data.pipeline import ClipPipeline
from .progress import progress_bar

RunFn = Callable[[np.ndarray], np.ndarray]


@dataclass
class EvalSummary:
    """Accuracy of one model, and its agreement with a reference model on the same clips."""

    clips: int
    top1: float | None = None
    top5: float | None = None
    agreement: float | None = None  # top-1 agreement with the reference
    cosine_min: float | None = None  # of softmax outputs vs the reference
    cosine_mean: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def collect_outputs(
    models: Mapping[str, RunFn],
    entries: Sequence[VideoEntry],
    pipeline: ClipPipeline,
    batch_size: int = 8,
    desc: str = "evaluating",
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Outputs ``{name: [N, C]}`` of every model over ``entries``, and the labels ``[N]``."""
    outs: dict[str, list] = {name: [] for name in models}
    labels = []
    with progress_bar(total=len(entries), desc=desc, unit="clip") as bar:
        for clips, lab in iter_batches(entries, pipeline, batch_size):
            for name, run in models.items():
                outs[name].append(run(clips))
            labels.append(lab)
            bar.update(len(clips))
    return {n: np.concatenate(v) for n, v in outs.items()}, np.concatenate(labels)


def summarize(logits: np.ndarray, labels: np.ndarray | None = None, reference: np.ndarray | None = None) -> EvalSummary:
    s = EvalSummary(clips=len(logits))
    if labels is not None:
        s.top1 = topk_accuracy(logits, labels, 1)
        s.top5 = topk_accuracy(logits, labels, 5)
    if reference is not None:
        s.agreement = top1_agreement(logits, reference)
        cos = cosine_similarity(softmax(logits), softmax(reference))
        s.cosine_min, s.cosine_mean = float(cos.min()), float(cos.mean())
    return s
