"""The model zoo: a registry of architectures, each one module and one row.

An :class:`ArchSpec` says everything the rest of vslim needs to know about an architecture:
how to build it for a class count and segment count, where its classifier lives (the
``state_dict`` prefix that fine-tuning re-initialises and that gives a checkpoint's class
count), what to do to a trained model before export (PP-TSMv2 folds its re-parameterised
branches), and why pruning leaves some layers alone. Weights are separate ``.pdparams``
files, ours or PaddleVideo's, loaded by :func:`~vslim.models.weights.load_weights`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import paddle.nn as nn

from ..config import PreprocessConfig
from ..errors import ModelError
from .backbones import TSMResNet
from .heads import SegmentConsensusHead
from .recognizer import Recognizer2D


def _tsm(backbone: Callable[[int], TSMResNet], drop_ratio: float):
    def build(num_classes: int, num_seg: int) -> Recognizer2D:
        net = backbone(num_seg)
        return Recognizer2D(
            net, SegmentConsensusHead(num_classes, net.out_channels, num_seg=num_seg, drop_ratio=drop_ratio)
        )

    return build


def _pptsm_v2(temporal_attention: bool):
    def build(num_classes: int, num_seg: int) -> Recognizer2D:
        from .pptsm_v2 import IdentityHead, PPTSMv2

        return Recognizer2D(PPTSMv2(num_classes, num_seg, use_temporal_att=temporal_attention), IdentityHead())

    return build


def _rep(model: Recognizer2D) -> None:
    model.backbone.rep()


PPTSM_V2_PRUNING = (
    "pruned in its folded form (one 5x5 depthwise conv per block); a depthwise conv's channels "
    "follow the pointwise conv before it, and the convs feeding a shortcut or the temporal shift "
    "stay whole"
)


@dataclass(frozen=True)
class ArchSpec:
    name: str
    description: str
    build: Callable[[int, int], nn.Layer]  # (num_classes, num_seg) -> a recognizer
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    classifier: str = "head.fc."  # state_dict prefix of the classifier (PaddleVideo's names)
    # folds training-only structure (PP-TSMv2's re-parameterised branches) into the deployed form: run before
    # export, QAT and pruning, so what is quantized or pruned is what is deployed
    before_export: Callable[[nn.Layer], None] | None = None
    pruning_notes: str = ""
    paddlevideo_name: str = ""  # PaddleVideo's model_name for this architecture

    def num_classes_key(self) -> str:
        return self.classifier + "weight"


ARCHS: dict[str, ArchSpec] = {
    spec.name: spec
    for spec in (
        ArchSpec(
            "pptsm_r50",
            "PP-TSM: ResNet50-vd tweaks backbone with temporal shift (PaddleVideo's ppTSM, K400 75.1%)",
            _tsm(lambda num_seg: TSMResNet(50, num_seg=num_seg, tweaks=True), 0.5),
            paddlevideo_name="ppTSM",
        ),
        ArchSpec(
            "pptsm_r101",
            "PP-TSM with a ResNet101-vd tweaks backbone",
            _tsm(lambda num_seg: TSMResNet(101, num_seg=num_seg, tweaks=True), 0.5),
            paddlevideo_name="ppTSM",
        ),
        ArchSpec(
            "tsm_r50",
            "TSM: plain ResNet50 backbone with temporal shift (PaddleVideo's TSM)",
            _tsm(lambda num_seg: TSMResNet(50, num_seg=num_seg, tweaks=False, stem_channels=(64,)), 0.5),
            paddlevideo_name="TSM",
        ),
        ArchSpec(
            "pptsm_v2",
            "PP-TSMv2: PP-LCNetV2 backbone, one temporal shift, re-parameterised depthwise convs "
            "(PaddleVideo's ppTSMv2, 8 or 16 frames, the CPU flagship)",
            _pptsm_v2(False),
            classifier="backbone.fc.",
            before_export=_rep,
            paddlevideo_name="ppTSMv2",
            pruning_notes=PPTSM_V2_PRUNING,
        ),
        ArchSpec(
            "pptsm_v2_att",
            "PP-TSMv2 with its temporal attention (PaddleVideo's 16-frame distillation configs, use_temporal_att)",
            _pptsm_v2(True),
            classifier="backbone.fc.",
            before_export=_rep,
            paddlevideo_name="ppTSMv2",
            pruning_notes=PPTSM_V2_PRUNING,
        ),
        ArchSpec(
            "pptsm_small",
            "Small PP-TSM (one block per stage, 1/8 width, 64x64 clips, 32 MFLOPs): trains on the synthetic set in minutes",
            _tsm(
                lambda num_seg: TSMResNet(
                    None,
                    num_seg=num_seg,
                    tweaks=True,
                    stage_blocks=(1, 1, 1, 1),
                    widths=(8, 16, 32, 64),
                    stem_channels=(8, 8, 16),
                ),
                0.2,
            ),
            PreprocessConfig(num_seg=8, short_size=72, target_size=64),
        ),
    )
}


def get_arch(name: str) -> ArchSpec:
    try:
        return ARCHS[name]
    except KeyError:
        raise ModelError(f"unknown architecture {name!r}; known: {', '.join(ARCHS)}") from None


def build_model(arch: str, num_classes: int, num_seg: int | None = None) -> nn.Layer:
    """A freshly initialised recognizer of architecture ``arch``."""
    spec = get_arch(arch)
    if num_classes < 1:
        raise ModelError(f"num_classes must be >= 1, got {num_classes}")
    return spec.build(num_classes, num_seg or spec.preprocess.num_seg)
