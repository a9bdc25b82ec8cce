"""Building blocks shared by the TSM-family backbones, named as PaddleVideo names them.

Sub-layer attribute names (``_conv``, ``_batch_norm``, ``conv0``, ``short``) are
identical to PaddleVideo's, so ``state_dict`` keys match the checkpoints PaddleVideo
users already have. PaddleVideo also pins global parameter names
(``res2a_branch2a_weights``); we do not, because dygraph refuses a second model with
the same parameter names in one process (tests, QAT teachers, benchmarks).
"""

from __future__ import annotations

import paddle
import paddle.nn as nn
import paddle.nn.functional as F
from paddle import ParamAttr
from paddle.regularizer import L2Decay


class ConvBNLayer(nn.Layer):
    """Conv2D (no bias) + BatchNorm2D + optional activation.

    ``is_tweaks_mode`` puts a 2x2 average pool before a stride-1 conv: the ResNet-D
    shortcut that PP-TSM uses instead of a strided 1x1 conv.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, groups=1, is_tweaks_mode=False, act=None):
        super().__init__()
        self.is_tweaks_mode = is_tweaks_mode
        self._pool2d_avg = nn.AvgPool2D(kernel_size=2, stride=2, padding=0, ceil_mode=True)
        self._conv = nn.Conv2D(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=(kernel_size - 1) // 2,
            groups=groups,
            bias_attr=False,
        )
        self._act = act
        self._batch_norm = nn.BatchNorm2D(
            out_channels,
            weight_attr=ParamAttr(regularizer=L2Decay(0.0)),
            bias_attr=ParamAttr(regularizer=L2Decay(0.0)),
        )

    def forward(self, x):
        if self.is_tweaks_mode:
            x = self._pool2d_avg(x)
        y = self._batch_norm(self._conv(x))
        if self._act:
            y = getattr(F, self._act)(y)
        return y


class TSMBottleneck(nn.Layer):
    """Bottleneck block with a temporal shift on the residual branch input.

    ``tweaks`` selects PP-TSM's variant (leaky ReLU, ResNet-D shortcut); without it
    this is the original TSM block (ReLU, strided 1x1 shortcut).
    """

    def __init__(self, in_channels, out_channels, stride, shortcut, num_seg, shift_ratio, tweaks=True, if_first=False):
        super().__init__()
        act = "leaky_relu" if tweaks else "relu"
        self.conv0 = ConvBNLayer(in_channels, out_channels, 1, act=act)
        self.conv1 = ConvBNLayer(out_channels, out_channels, 3, stride=stride, act=act)
        self.conv2 = ConvBNLayer(out_channels, out_channels * 4, 1, act=None)
        if not shortcut:
            if tweaks:
                self.short = ConvBNLayer(in_channels, out_channels * 4, 1, stride=1, is_tweaks_mode=not if_first)
            else:
                self.short = ConvBNLayer(in_channels, out_channels * 4, 1, stride=stride)
        self.shortcut = shortcut
        self.num_seg = num_seg
        self.shift_ratio = shift_ratio
        self._out_act = act

    def forward(self, x):
        shifted = F.temporal_shift(x, self.num_seg, self.shift_ratio)
        y = self.conv2(self.conv1(self.conv0(shifted)))
        short = x if self.shortcut else self.short(x)
        return getattr(F, self._out_act)(paddle.add(short, y))
