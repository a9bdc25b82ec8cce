"""The 2D recognizer: fold segments into the batch, run the backbone, classify the clip."""

from __future__ import annotations

import paddle
import paddle.nn as nn


class Recognizer2D(nn.Layer):
    """``[N, num_seg, 3, H, W]`` clips -> ``[N, num_classes]`` logits.

    Attribute names ``backbone`` and ``head`` give the ``state_dict`` prefixes
    PaddleVideo's ``Recognizer2D`` checkpoints use.
    """

    def __init__(self, backbone: nn.Layer, head: nn.Layer):
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, imgs):
        x = paddle.reshape(imgs, [-1] + list(imgs.shape[2:]))
        return self.head(self.backbone(x))
