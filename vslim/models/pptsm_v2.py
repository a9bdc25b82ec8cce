"""PP-TSMv2: PaddleVideo's flagship CPU video model (a PP-LCNetV2 backbone with one temporal shift).

Written from the architecture's published description, with PaddleVideo's ``state_dict`` names
(``backbone.stem.0.conv.weight`` ... ``backbone.fc.bias``, 278 tensors) so checkpoints trained by
PaddleVideo load unchanged. The classifier lives in the backbone and the head is an identity
(PaddleVideo's ``MoViNetHead``), as there.

* Stages ``[2, 2, 6, 2]`` blocks of depthwise-separable convolutions; stages 3 and 4 use
  re-parameterisable depthwise convolutions: training sums 5x5, 3x3 and 1x1 (no 1x1 when the
  block strides) conv+BN branches; :meth:`PPTSMv2.rep` folds them into one 5x5 conv with bias
  before export, as PaddleVideo's export does (same outputs up to float rounding).
* ``temporal_shift`` once, before stage 3, with ratio ``1/num_seg``; configs with
  ``use_temporal_att`` weight each frame there first (``GlobalAttention``, keys
  ``backbone.global_attention.fc.*``).
* Before folding, ``dw_conv`` exists but is unused (PaddleVideo's layout, so its checkpoints load).
* ``Dropout(0.2, downscale_in_infer)``: at inference the features are scaled by 0.8 before ``fc``,
  which the exported program keeps.
"""

from __future__ import annotations

import numpy as np
import paddle
import paddle.nn as nn
import paddle.nn.functional as F

# in_channels, kernel, split_pw, use_rep, use_se, use_shortcut (PaddleVideo's NET_CONFIG at scale 1.0)
NET_CONFIG = {
    "stage1": [64, 3, False, False, False, False],
    "stage2": [128, 3, False, False, False, False],
    "stage3": [256, 5, True, True, True, False],
    "stage4": [512, 5, False, True, False, True],
}
DEPTHS = (2, 2, 6, 2)
LAST_CHANNELS = 1280


class ConvBNLayer(nn.Layer):
    def __init__(self, in_channels, out_channels, kernel_size, stride=1, groups=1, use_act=True):
        super().__init__()
        self.conv = nn.Conv2D(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=(kernel_size - 1) // 2,
            groups=groups,
            weight_attr=paddle.ParamAttr(initializer=nn.initializer.KaimingNormal()),
            bias_attr=False,
        )
        self.bn = nn.BatchNorm2D(out_channels)
        self.act = nn.ReLU() if use_act else None

    def forward(self, x):
        x = self.bn(self.conv(x))
        return self.act(x) if self.act is not None else x


class SEModule(nn.Layer):
    def __init__(self, channels, reduction=4):
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2D(1)
        self.conv1 = nn.Conv2D(channels, channels // reduction, 1)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2D(channels // reduction, channels, 1)
        self.hardsigmoid = nn.Sigmoid()  # PaddleVideo's name; a plain sigmoid

    def forward(self, x):
        s = self.hardsigmoid(self.conv2(self.relu(self.conv1(self.avg_pool(x)))))
        return x * s


class GlobalAttention(nn.Layer):
    """The 16-frame configs' temporal attention: one sigmoid weight per frame, from the frames' means."""

    def __init__(self, num_seg: int):
        super().__init__()
        self.num_seg = num_seg
        self.fc = nn.Linear(num_seg, num_seg)

    def forward(self, x):
        c, h, w = x.shape[1:]
        weights = F.sigmoid(self.fc(paddle.mean(paddle.reshape(x, [-1, self.num_seg, c * h * w]), axis=2)))
        y = paddle.reshape(x, [-1, self.num_seg, c, h, w]) * paddle.reshape(weights, [-1, self.num_seg, 1, 1, 1])
        return paddle.reshape(y, [-1, c, h, w])


class RepDepthwiseSeparable(nn.Layer):
    def __init__(
        self,
        in_channels,
        out_channels,
        stride,
        dw_size=3,
        split_pw=False,
        use_rep=False,
        use_se=False,
        use_shortcut=False,
    ):
        super().__init__()
        self.is_repped = False
        self.dw_size, self.use_rep = dw_size, use_rep
        self.use_se = use_se
        self.use_shortcut = bool(use_shortcut and stride == 1 and in_channels == out_channels)
        if use_rep:
            self.dw_conv_list = nn.LayerList(
                [
                    ConvBNLayer(in_channels, in_channels, k, stride, groups=in_channels, use_act=False)
                    for k in range(dw_size, 0, -2)
                    if not (k == 1 and stride != 1)
                ]
            )
            self.dw_conv = nn.Conv2D(
                in_channels, in_channels, dw_size, stride=stride, padding=(dw_size - 1) // 2, groups=in_channels
            )
        else:
            self.dw_conv = ConvBNLayer(in_channels, in_channels, dw_size, stride, groups=in_channels)
        self.act = nn.ReLU()
        if use_se:
            self.se = SEModule(in_channels)
        self.split_pw = split_pw
        if split_pw:
            mid = int(out_channels * 0.5)
            self.pw_conv_1 = ConvBNLayer(in_channels, mid, 1)
            self.pw_conv_2 = ConvBNLayer(mid, out_channels, 1)
        else:
            self.pw_conv = ConvBNLayer(in_channels, out_channels, 1)

    def forward(self, x):
        identity = x
        if self.use_rep:
            if self.is_repped:
                x = self.act(self.dw_conv(x))
            else:
                y = self.dw_conv_list[0](x)
                for branch in self.dw_conv_list[1:]:
                    y = y + branch(x)
                x = self.act(y)
        else:
            x = self.dw_conv(x)
        if self.use_se:
            x = self.se(x)
        x = self.pw_conv_2(self.pw_conv_1(x)) if self.split_pw else self.pw_conv(x)
        return x + identity if self.use_shortcut else x

    def rep(self) -> None:
        """Fold the branches' conv+BN into ``dw_conv`` (weights zero-padded to ``dw_size``) and drop them.

        Dropping them makes the folded block a different structure with its own ``state_dict``
        (no ``dw_conv_list`` keys): pruning and QAT work on it, and a folded checkpoint can only
        load into a folded model, never be folded twice.
        """
        if not self.use_rep or self.is_repped:
            return
        kernel: np.ndarray | float = 0.0
        bias = 0.0
        for branch in self.dw_conv_list:
            w = branch.conv.weight.numpy()
            bn = branch.bn
            std = np.sqrt(bn._variance.numpy() + bn._epsilon)
            gamma, beta, mean = bn.weight.numpy(), bn.bias.numpy(), bn._mean.numpy()
            pad = (self.dw_size - w.shape[-1]) // 2
            kernel = kernel + np.pad(w * (gamma / std)[:, None, None, None], ((0, 0), (0, 0), (pad, pad), (pad, pad)))
            bias = bias + beta - mean * gamma / std
        self.dw_conv.weight.set_value(np.asarray(kernel, np.float32))
        self.dw_conv.bias.set_value(np.asarray(bias, np.float32))
        del self.dw_conv_list
        self.is_repped = True


class PPTSMv2(nn.Layer):
    """``[N*T, 3, H, W]`` frames -> ``[N, num_classes]`` logits; the classifier is ``fc`` (``backbone.fc``)."""

    def __init__(
        self, num_classes: int = 400, num_seg: int = 8, dropout_prob: float = 0.2, use_temporal_att: bool = False
    ):
        super().__init__()
        self.num_seg = num_seg
        self.out_channels = LAST_CHANNELS
        self.stem = nn.Sequential(ConvBNLayer(3, 32, 3, 2), RepDepthwiseSeparable(32, 64, 1, 3))
        stages = []
        for depth, key in zip(DEPTHS, NET_CONFIG):
            c, k, split_pw, use_rep, use_se, use_shortcut = NET_CONFIG[key]
            stages.append(
                nn.Sequential(
                    *[
                        RepDepthwiseSeparable(
                            c if i == 0 else 2 * c,
                            2 * c,
                            2 if i == 0 else 1,
                            k,
                            split_pw,
                            use_rep,
                            use_se,
                            use_shortcut,
                        )
                        for i in range(depth)
                    ]
                )
            )
        self.stages = nn.LayerList(stages)
        self.avg_pool = nn.AdaptiveAvgPool2D(1)
        self.last_conv = nn.Conv2D(NET_CONFIG["stage4"][0] * 2, LAST_CHANNELS, 1, bias_attr=False)
        self.act = nn.ReLU()
        self.dropout = nn.Dropout(p=dropout_prob, mode="downscale_in_infer")
        self.fc = nn.Linear(LAST_CHANNELS, num_classes)
        self.global_attention = GlobalAttention(num_seg) if use_temporal_att else None

    def forward(self, x):
        x = self.stem(x)
        for i, stage in enumerate(self.stages):
            if i == 2:
                if self.global_attention is not None:
                    x = self.global_attention(x)
                x = F.temporal_shift(x, self.num_seg, 1.0 / self.num_seg)
            x = stage(x)
        x = self.dropout(self.act(self.last_conv(self.avg_pool(x))))
        x = paddle.mean(paddle.reshape(x, [-1, self.num_seg, LAST_CHANNELS]), axis=1)
        return self.fc(x)

    def rep(self) -> None:
        for layer in self.sublayers():
            if isinstance(layer, RepDepthwiseSeparable):
                layer.rep()


class IdentityHead(nn.Layer):
    """PaddleVideo's ``MoViNetHead``: the backbone already classifies."""

    def forward(self, x):
        return x
