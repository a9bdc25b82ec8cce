"""Batches of clips for training, evaluation and calibration.

Decoding and resizing run in OpenCV and numpy, which release the GIL, so a small
thread pool overlaps them with the model; no worker processes (and no pickling of
clips) are needed.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .lists import VideoEntry
from .pipeline import ClipPipeline


def iter_batches(
    entries: Sequence[VideoEntry],
    pipeline: ClipPipeline,
    batch_size: int,
    train: bool = False,
    seed: int | None = None,
    workers: int = 2,
    shuffle: bool = False,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``(clips [B, T, 3, S, S] float32, labels [B] int64)``; the last batch may be short."""
    order = np.arange(len(entries))
    rng = np.random.default_rng(seed)
    if shuffle:
        rng.shuffle(order)
    # One seed per clip keeps random sampling reproducible whatever the thread timing.
    clip_seeds = rng.integers(0, 2**31 - 1, size=len(entries))

    def load(i: int) -> np.ndarray:
        clip_rng = np.random.default_rng(int(clip_seeds[i])) if train else None
        return pipeline.load(entries[i], train=train, rng=clip_rng)

    batches = [order[s : s + batch_size] for s in range(0, len(order), batch_size)]
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        # Submit batch k+1 before handing out batch k, so decoding overlaps the model.
        pending = [pool.submit(load, i) for i in batches[0]] if batches else []
        for k, idx in enumerate(batches):
            clips = [f.result() for f in pending]
            if k + 1 < len(batches):
                pending = [pool.submit(load, i) for i in batches[k + 1]]
            labels = np.array([entries[i].label for i in idx], dtype=np.int64)
            yield np.stack(clips), labels
