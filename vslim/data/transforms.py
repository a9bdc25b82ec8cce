"""PP-TSM frame transforms on whole clips at once.

Frames arrive as one ``[T, H, W, 3]`` uint8 array. Resizing treats the T frames as
3T channels of one image (one OpenCV call instead of T), crops are slices, and
normalisation is one fused multiply-add after the layout change, done on uint8 so
the float copy is made once.
"""
from __future__ import annotations

import cv2
import numpy as np

# OpenCV resizes images with at most this many channels in one call.
_CV_MAX_CHANNELS = 512


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
    if t * c <= _CV_MAX_CHANNELS:
        stacked = np.ascontiguousarray(frames.transpose(1, 2, 0, 3)).reshape(h, w, t * c)
        out = cv2.resize(stacked, (ow, oh), interpolation=cv2.INTER_LINEAR)
        return out.reshape(oh, ow, t, c).transpose(2, 0, 1, 3)
    return np.stack([cv2.resize(f, (ow, oh), interpolation=cv2.INTER_LINEAR) for f in frames])


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
    std = np.asarray(std, dtype=np.float32)
    scale = (1.0 / (255.0 * std)).reshape(1, 3, 1, 1)
    bias = (-np.asarray(mean, dtype=np.float32) / std).reshape(1, 3, 1, 1)
    chw = frames.transpose(0, 3, 1, 2).astype(np.float32)
    chw *= scale
    chw += bias
    return chw
