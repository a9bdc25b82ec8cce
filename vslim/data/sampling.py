"""Uniform segment sampling (TSN/TSM/PP-TSM), index for index as PaddleVideo's ``Sampler``.

The clip is cut into ``num_seg`` equal segments; from each, ``seg_len`` consecutive
frames are taken: the centre ones for evaluation, a random start for training.
Indices are 0-based; frame folders add 1 when naming files.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


def segment_indices(
    num_frames: int,
    num_seg: int,
    seg_len: int = 1,
    train: bool = False,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Frame indices to decode, ``num_seg * seg_len`` of them, wrapped into ``[0, num_frames)``."""
    if num_frames < 1:
        raise ValueError(f"a clip needs at least one frame, got {num_frames}")
    average_dur = num_frames // num_seg
    seg = np.arange(num_seg)
    if average_dur >= seg_len:
        if train:
            rng = rng or np.random.default_rng()
            start = rng.integers(0, average_dur - seg_len + 1, size=num_seg)
        else:
            start = np.full(num_seg, (average_dur - 1) // 2)
        start = start + seg * average_dur
    elif average_dur >= 1:
        start = seg * average_dur
    else:
        start = seg
    idx = start[:, None] + np.arange(seg_len)[None, :]
    return (idx.reshape(-1) % num_frames).astype(np.int64)


@dataclass(frozen=True)
class Sampling:
    """How a clip was taken from a video too short for it: said to users, never silent.

    Printed as ``sampling`` beside a prediction (``vslim predict --json``, the servers'
    video answers) and as a ``note:`` line in text output.
    """

    video_frames: int
    clip_frames: int
    repeated: bool
    note: str

    def to_dict(self) -> dict:
        return asdict(self)


def sampling_record(num_frames: int, indices) -> Sampling | None:
    """The record for a clip whose ``indices`` repeat frames (a video shorter than the clip); None otherwise."""
    indices = [int(i) for i in indices]
    if len(set(indices)) == len(indices):
        return None
    frames = f"{num_frames} frame" + ("" if num_frames == 1 else "s")
    note = (
        f"the video has {frames} but the model's clip takes {len(indices)}, so frames were repeated to fill "
        "it (as PaddleVideo does)"
    )
    return Sampling(num_frames, len(indices), True, note)
