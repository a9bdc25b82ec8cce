"""Clips in bounded memory: how many fit one forward pass, and a store that spills to disk.

A PP-TSN clip is 25 segments x TenCrop = 250 images (150 MB as float32): eight of them in one batch,
or thirty-two held for calibration, is what OOM-killed PTQ and packaging of PaddleVideo's PP-TSN.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np

# A batch holds at most this many images (224 x 224 equivalents): a 250-image TSN clip runs alone, 8-frame
# clips keep the configured batch. Without the bound PP-TSN's default batch of 4 was a 1000-image forward pass.
MAX_BATCH_ELEMENTS = 128 * 3 * 224 * 224
IN_MEMORY_BYTES = 1 << 30  # calibration clips past this are kept on disk, one file each, read when used


def bounded_batch(batch_size: int, clip_shape) -> int:
    """``batch_size``, or fewer clips when each is large (TSN's 25 segments x TenCrop)."""
    per_clip = int(np.prod(clip_shape))
    return max(1, min(batch_size, MAX_BATCH_ELEMENTS // max(per_clip, 1)))


def run_bounded(run, clips, batch_size: int) -> np.ndarray:
    """``run`` over ``clips`` (an array or a :class:`ClipStore`) in bounded batches, outputs concatenated."""
    step = bounded_batch(batch_size, clips.shape[1:])
    return np.concatenate([run(clips[i : i + step]) for i in range(0, len(clips), step)])


class ClipStore:
    """Decoded calibration clips, indexable like the array they replace (``store[i]``, ``store[a:b]``).

    Small sets stay in memory; past :data:`IN_MEMORY_BYTES` every clip goes to its own ``.npy`` in a
    scratch folder and is read back when used, so PTQ's memory is one batch, not the whole set
    (32 PP-TSN clips are 4.8 GB).
    """

    def __init__(self):
        self._memory: list[np.ndarray] = []
        self._folder: Path | None = None
        self._count = 0
        self._shape: tuple = ()
        self._bytes = 0

    def append(self, batch: np.ndarray) -> None:
        for clip in batch:
            self._shape = clip.shape
            self._bytes += clip.nbytes
            if self._folder is None and self._bytes > IN_MEMORY_BYTES:
                import weakref

                self._folder = Path(tempfile.mkdtemp(prefix="vslim-calib-"))
                weakref.finalize(self, shutil.rmtree, str(self._folder), True)
                for i, held in enumerate(self._memory):
                    np.save(self._folder / f"{i}.npy", held)
                self._memory = []
            if self._folder is not None:
                np.save(self._folder / f"{self._count}.npy", clip)
            else:
                self._memory.append(clip)
            self._count += 1

    @property
    def on_disk(self) -> bool:
        return self._folder is not None

    @property
    def shape(self) -> tuple:
        return (self._count, *self._shape)

    def __len__(self) -> int:
        return self._count

    def __iter__(self):
        return (self._clip(i) for i in range(self._count))

    def _clip(self, i: int) -> np.ndarray:
        return np.load(self._folder / f"{i}.npy") if self._folder is not None else self._memory[i]

    def __getitem__(self, key):
        if isinstance(key, slice):
            picked = range(*key.indices(self._count))
            return np.stack([self._clip(i) for i in picked]) if picked else np.empty((0, *self._shape), np.float32)
        if not -self._count <= key < self._count:
            raise IndexError(key)
        return self._clip(key % self._count)
