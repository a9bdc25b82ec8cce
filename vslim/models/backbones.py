"""TSM-family backbones: PP-TSM's ResNet-vd "tweaks" and the original TSM ResNet.

One class covers the standard depths (50, 101, 152) and the small variant: a
backbone is its stem, the number of blocks per stage and the stage widths.
Block names (``bb_0_0`` for tweaks, ``res2a`` for TSM) follow PaddleVideo so
trained weights load.
"""

from __future__ import annotations

from collections.abc import Sequence

import paddle.nn as nn

from .layers import ConvBNLayer, TSMBottleneck

STAGE_BLOCKS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}
WIDTHS = (64, 128, 256, 512)


def _block_name(depth: int | None, stage: int, i: int) -> str:
    if depth in (101, 152) and stage == 2:
        return "res4a" if i == 0 else f"res4b{i}"
    return f"res{stage + 2}{chr(97 + i)}"


class TSMResNet(nn.Layer):
    """ResNet backbone with temporal shift in every bottleneck.

    Input ``[N*num_seg, 3, H, W]``; output ``[N*num_seg, 4*widths[-1], H/32, W/32]``.
    """

    def __init__(
        self,
        depth: int | None = 50,
        num_seg: int = 8,
        tweaks: bool = True,
        stage_blocks: Sequence[int] | None = None,
        widths: Sequence[int] = WIDTHS,
        stem_channels: Sequence[int] = (32, 32, 64),
        shift_ratio: float | None = None,
    ):
        super().__init__()
        if stage_blocks is None:
            if depth not in STAGE_BLOCKS:
                raise ValueError(f"supported depths are {sorted(STAGE_BLOCKS)}, got {depth}")
            stage_blocks = STAGE_BLOCKS[depth]
        self.num_seg = num_seg
        self.tweaks = tweaks
        # PaddleVideo shifts 1/num_seg of the channels each way (0.125 for 8 segments).
        shift_ratio = 1.0 / num_seg if shift_ratio is None else shift_ratio
        if tweaks:
            c1, c2, c3 = stem_channels
            self.conv1_1 = ConvBNLayer(3, c1, 3, stride=2, act="leaky_relu")
            self.conv1_2 = ConvBNLayer(c1, c2, 3, stride=1, act="leaky_relu")
            self.conv1_3 = ConvBNLayer(c2, c3, 3, stride=1, act="leaky_relu")
            in_channels = c3
        else:
            in_channels = stem_channels[-1]
            self.conv = ConvBNLayer(3, in_channels, 7, stride=2, act="relu")
        self.pool2D_max = nn.MaxPool2D(kernel_size=3, stride=2, padding=1)
        self.block_list = []
        for stage, n_blocks in enumerate(stage_blocks):
            for i in range(n_blocks):
                block = TSMBottleneck(
                    in_channels,
                    widths[stage],
                    stride=2 if i == 0 and stage != 0 else 1,
                    shortcut=i != 0,
                    num_seg=num_seg,
                    shift_ratio=shift_ratio,
                    tweaks=tweaks,
                    if_first=stage == i == 0,
                )
                self.block_list.append(
                    self.add_sublayer(f"bb_{stage}_{i}" if tweaks else _block_name(depth, stage, i), block)
                )
                in_channels = widths[stage] * 4
        self.out_channels = in_channels

    def forward(self, x):
        if self.tweaks:
            y = self.conv1_3(self.conv1_2(self.conv1_1(x)))
        else:
            y = self.conv(x)
        y = self.pool2D_max(y)
        for block in self.block_list:
            y = block(y)
        return y
