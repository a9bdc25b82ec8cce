"""Classification heads of TSN/TSM/PP-TSM: pool each frame, average the segments, classify.

``TSMHead`` and ``ppTSMHead`` differ in PaddleVideo only by initialisation and
per-parameter learning rates; their forward pass and ``state_dict`` keys
(``fc.weight``, ``fc.bias``) are the same, so one class serves both.
"""

from __future__ import annotations

import paddle
import paddle.nn as nn
from paddle import ParamAttr
from paddle.regularizer import L2Decay


class SegmentConsensusHead(nn.Layer):
    """``[N*T, C, h, w]`` features -> ``[N, num_classes]`` logits (no softmax, as PaddleVideo exports)."""

    def __init__(
        self, num_classes: int, in_channels: int, num_seg: int = 8, drop_ratio: float = 0.5, std: float = 0.01
    ):
        super().__init__()
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.num_seg = num_seg
        self.avgpool2d = nn.AdaptiveAvgPool2D((1, 1))
        self.dropout = nn.Dropout(p=drop_ratio) if drop_ratio else None
        self.fc = nn.Linear(
            in_channels,
            num_classes,
            weight_attr=ParamAttr(
                initializer=nn.initializer.Normal(0.0, std), learning_rate=5.0, regularizer=L2Decay(1e-4)
            ),
            bias_attr=ParamAttr(initializer=nn.initializer.Constant(0.0), learning_rate=10.0, regularizer=L2Decay(0.0)),
        )

    def forward(self, x):
        x = self.avgpool2d(x)
        if self.dropout is not None:
            x = self.dropout(x)
        # reshape, never flatten: Lite's x86 optimizer crashes on flatten_contiguous_range.
        x = paddle.reshape(x, [-1, self.num_seg, self.in_channels])
        x = paddle.mean(x, axis=1)
        return self.fc(x)
