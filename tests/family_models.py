"""Small models with the graph shapes, input names, layouts and key ops of PaddleVideo's recognition families.

Written for the tests (never PaddleVideo's code): each one is exported the way PaddleVideo's
``tools/export_model.py`` exports its family — the same input names and layouts, a
``{name}.pdmodel`` / ``{name}.pdiparams`` pair, no ``vslim.json`` — so vslim meets it as it
meets a user's PaddleVideo export. Sizes are tiny so each builds in a second.

| family | input(s) | key ops |
|---|---|---|
| tsn (TenCrop) | ``data_batch_0 [N, seg*10, 3, S, S]`` | conv2d per frame, mean over segments x crops |
| movinet | ``data_batch_0 [N, T, 3, S, S]`` | transpose to NCTHW, conv3d |
| timesformer | ``data_batch_0 [N, 3, T, S, S]`` | patch embedding, divided space-time attention (matmul, softmax) |
| videoswin | ``data_batch_0 [N, 3, T, S, S]`` | conv3d patch embedding, 8-D window partition (oneDNN refuses it) |
| slowfast | ``data_batch_0 [N, 3, T/alpha, S, S]``, ``data_batch_1 [N, 3, T, S, S]`` | two conv3d pathways, concat |
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import paddle
import paddle.nn as nn
from paddle.static import InputSpec

NUM_CLASSES = 5


class TSN(nn.Layer):
    def __init__(self, num_seg: int, crops: int):
        super().__init__()
        self.frames = num_seg * crops
        self.conv = nn.Conv2D(3, 8, 3, stride=2, padding=1)
        self.pool = nn.AdaptiveAvgPool2D(1)
        self.fc = nn.Linear(8, NUM_CLASSES)

    def forward(self, x):
        x = paddle.reshape(x, [-1, x.shape[2], x.shape[3], x.shape[4]])
        x = paddle.reshape(self.pool(nn.functional.relu(self.conv(x))), [-1, self.frames, 8])
        return self.fc(paddle.mean(x, axis=1))


class MoViNet(nn.Layer):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv3D(3, 8, (3, 3, 3), stride=(1, 2, 2), padding=1)
        self.pool = nn.AdaptiveAvgPool3D(1)
        self.fc = nn.Linear(8, NUM_CLASSES)

    def forward(self, x):
        x = paddle.transpose(x, [0, 2, 1, 3, 4])  # [N, T, C, H, W] -> [N, C, T, H, W]
        x = self.pool(nn.functional.swish(self.conv(x)))
        return self.fc(paddle.flatten(x, 1))


class Attention(nn.Layer):
    def __init__(self, dim: int):
        super().__init__()
        self.scale = dim**-0.5
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        q, k, v = paddle.split(self.qkv(x), 3, axis=-1)
        a = nn.functional.softmax(paddle.matmul(q, k, transpose_y=True) * self.scale, axis=-1)
        return self.proj(paddle.matmul(a, v))


class TimeSformer(nn.Layer):
    """Divided space-time attention over patch tokens of every frame."""

    def __init__(self, frames: int, size: int, patch: int = 8, dim: int = 16):
        super().__init__()
        self.frames, self.size, self.dim, self.tokens = frames, size, dim, (size // patch) ** 2
        self.patch = nn.Conv2D(3, dim, patch, stride=patch)
        self.time_attn, self.space_attn = Attention(dim), Attention(dim)
        self.norm = nn.LayerNorm(dim)
        self.fc = nn.Linear(dim, NUM_CLASSES)

    def forward(self, x):  # [N, 3, T, H, W]
        t, p, d = self.frames, self.tokens, self.dim
        x = paddle.reshape(paddle.transpose(x, [0, 2, 1, 3, 4]), [-1, 3, self.size, self.size])
        x = paddle.reshape(paddle.transpose(paddle.flatten(self.patch(x), 2), [0, 2, 1]), [-1, t, p, d])
        y = paddle.reshape(paddle.transpose(x, [0, 2, 1, 3]), [-1, t, d])
        y = paddle.reshape(y + self.time_attn(y), [-1, p, t, d])
        s = paddle.reshape(paddle.transpose(y, [0, 2, 1, 3]), [-1, p, d])
        s = s + self.space_attn(s)
        return self.fc(self.norm(paddle.mean(paddle.reshape(s, [-1, t * p, d]), axis=1)))


class VideoSwin(nn.Layer):
    """Conv3d patch embedding and Swin3D's window partition: an 8-D reshape + transpose."""

    def __init__(self, frames: int, size: int, dim: int = 8):
        super().__init__()
        self.grid, self.dim = (frames // 2, size // 4, size // 4), dim
        self.patch = nn.Conv3D(3, dim, (2, 4, 4), stride=(2, 4, 4))
        self.fc = nn.Linear(dim, NUM_CLASSES)

    def forward(self, x):  # [N, 3, T, H, W]
        d, h, w = self.grid
        x = paddle.transpose(self.patch(x), [0, 2, 3, 4, 1])
        x = paddle.reshape(x, [-1, d // 2, 2, h // 2, 2, w // 2, 2, self.dim])
        x = paddle.reshape(paddle.transpose(x, [0, 1, 3, 5, 2, 4, 6, 7]), [-1, 8, self.dim])
        a = nn.functional.softmax(paddle.matmul(x, x, transpose_y=True), axis=-1)
        x = paddle.reshape(paddle.matmul(a, x), [-1, d * h * w, self.dim])
        return self.fc(paddle.mean(x, axis=1))


class SlowFast(nn.Layer):
    def __init__(self):
        super().__init__()
        self.slow = nn.Conv3D(3, 8, (1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))
        self.fast = nn.Conv3D(3, 4, (3, 3, 3), stride=(1, 2, 2), padding=1)
        self.pool = nn.AdaptiveAvgPool3D(1)
        self.fc = nn.Linear(12, NUM_CLASSES)

    def forward(self, slow, fast):
        a = paddle.flatten(self.pool(nn.functional.relu(self.slow(slow))), 1)
        b = paddle.flatten(self.pool(nn.functional.relu(self.fast(fast))), 1)
        return self.fc(paddle.concat([a, b], axis=1))


def build(
    family: str,
    out: Path,
    *,
    num_seg: int = 8,
    size: int = 32,
    name: str = "inference",
    seed: int = 0,
    alpha: int = 4,
    crops: int = 10,
    input_names: tuple[str, ...] = (),
) -> Path:
    """Export a small ``family`` model to ``out`` as PaddleVideo exports it; returns ``out``."""
    paddle.seed(seed)
    np.random.seed(seed)
    if family == "tsn":
        model, specs = TSN(num_seg, crops), [[None, num_seg * crops, 3, size, size]]
    elif family == "movinet":
        model, specs = MoViNet(), [[None, num_seg, 3, size, size]]
    elif family == "timesformer":
        model, specs = TimeSformer(num_seg, size), [[None, 3, num_seg, size, size]]
    elif family == "videoswin":
        model, specs = VideoSwin(num_seg, size), [[None, 3, num_seg, size, size]]
    elif family == "slowfast":
        model, specs = SlowFast(), [[None, 3, num_seg // alpha, size, size], [None, 3, num_seg, size, size]]
    else:
        raise ValueError(family)
    model.eval()
    names = input_names or tuple(f"data_batch_{i}" for i in range(len(specs)))
    out.mkdir(parents=True, exist_ok=True)
    paddle.jit.save(model, str(out / name), input_spec=[InputSpec(s, "float32", n) for s, n in zip(specs, names)])
    return out
