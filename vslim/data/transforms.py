"""PP-TSM frame transforms on whole clips.

Frames arrive as one ``[T, H, W, 3]`` uint8 array. Each frame is resized by
OpenCV's 3-channel path (measured 5x faster than one call over 3T stacked
channels, which falls off OpenCV's SIMD paths), crops are slices, and
normalisation writes each output channel plane once, straight from uint8
(1.4 ms for 8x224x224 instead of 4.2 ms for transpose-then-normalise).
"""

from __future__ import annotations

import cv2
import numpy as np


def scaled_size(h: int, w: int, short_size: int, fixed_ratio: bool) -> tuple[int, int]:
    """Output (height, width) of PaddleVideo's ``Scale`` for an ``h x w`` frame."""
    if w <= h:
        ow = short_size
        oh = int(short_size * 4.0 / 3.0) if fixed_ratio else int(h * short_size / w)
    else:
        oh = short_size
        ow = int(short_size * 4.0 / 3.0) if fixed_ratio else int(w * short_size / h)
    return oh, ow


def scale_short_side(frames: np.ndarray, short_size: int, fixed_ratio: bool = True) -> np.ndarray:
    """Resize so the short side is ``short_size`` (bilinear), as PaddleVideo's ``Scale``."""
    t, h, w, c = frames.shape
    if (w <= h and w == short_size) or (h <= w and h == short_size):
        return frames
    oh, ow = scaled_size(h, w, short_size, fixed_ratio)
    out = np.empty((t, oh, ow, c), np.uint8)
    for i, frame in enumerate(frames):
        cv2.resize(frame, (ow, oh), dst=out[i], interpolation=cv2.INTER_LINEAR)
    return out


def crop_offsets(h: int, w: int, size: int) -> tuple[int, int]:
    """Top-left corner of a centred ``size`` square (PaddleVideo rounds half away)."""
    return int(round((h - size) / 2.0)), int(round((w - size) / 2.0))


def center_crop(frames: np.ndarray, size: int) -> np.ndarray:
    _, h, w, _ = frames.shape
    y, x = crop_offsets(h, w, size)
    return frames[:, y : y + size, x : x + size]


def random_crop(frames: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    _, h, w, _ = frames.shape
    y = int(rng.integers(0, h - size + 1))
    x = int(rng.integers(0, w - size + 1))
    return frames[:, y : y + size, x : x + size]


def normalize_to_tchw(frames: np.ndarray, mean, std) -> np.ndarray:
    """``[T, H, W, 3]`` uint8 -> ``[T, 3, H, W]`` float32 ``(x / 255 - mean) / std``."""
    t, h, w, c = frames.shape
    std = np.asarray(std, dtype=np.float32)
    scale = 1.0 / (255.0 * std)
    bias = -np.asarray(mean, dtype=np.float32) / std
    out = np.empty((t, c, h, w), np.float32)
    for ch in range(c):
        plane = out[:, ch]
        np.multiply(frames[..., ch], scale[ch], out=plane, casting="unsafe")
        plane += bias[ch]
    return out
