"""The model zoo: named architectures with their default preprocessing.

An architecture is a recipe (backbone, head, clip size); weights are separate
``.pdparams`` files, ours or PaddleVideo's, loaded by :func:`load_weights`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from ..config import PreprocessConfig
from ..errors import ModelError
from .backbones import TSMResNet
from .heads import SegmentConsensusHead
from .recognizer import Recognizer2D


@dataclass(frozen=True)
class ArchSpec:
    name: str
    description: str
    backbone: Callable[[int], TSMResNet]  # num_seg -> backbone
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    drop_ratio: float = 0.5


ARCHS: dict[str, ArchSpec] = {
    spec.name: spec
    for spec in (
        ArchSpec(
            "pptsm_r50",
            "PP-TSM: ResNet50-vd tweaks backbone with temporal shift (PaddleVideo's ppTSM, K400 75.1%)",
            lambda num_seg: TSMResNet(50, num_seg=num_seg, tweaks=True),
        ),
        ArchSpec(
            "pptsm_r101",
            "PP-TSM with a ResNet101-vd tweaks backbone",
            lambda num_seg: TSMResNet(101, num_seg=num_seg, tweaks=True),
        ),
        ArchSpec(
            "tsm_r50",
            "TSM: plain ResNet50 backbone with temporal shift (PaddleVideo's TSM)",
            lambda num_seg: TSMResNet(50, num_seg=num_seg, tweaks=False, stem_channels=(64,)),
        ),
        ArchSpec(
            "pptsm_small",
            "Small PP-TSM (one block per stage, 1/8 width, 64x64 clips, 32 MFLOPs): trains on the synthetic set in minutes",
            lambda num_seg: TSMResNet(
                None, num_seg=num_seg, tweaks=True, stage_blocks=(1, 1, 1, 1),
                widths=(8, 16, 32, 64), stem_channels=(8, 8, 16),
            ),
            PreprocessConfig(num_seg=8, short_size=72, target_size=64),
            drop_ratio=0.2,
        ),
    )
}


def get_arch(name: str) -> ArchSpec:
    try:
        return ARCHS[name]
    except KeyError:
        raise ModelError(f"unknown architecture {name!r}; known: {', '.join(ARCHS)}") from None


def build_model(arch: str, num_classes: int, num_seg: int | None = None) -> Recognizer2D:
    """A freshly initialised recognizer of architecture ``arch``."""
    spec = get_arch(arch)
    if num_classes < 1:
        raise ModelError(f"num_classes must be >= 1, got {num_classes}")
    num_seg = num_seg or spec.preprocess.num_seg
    backbone = spec.backbone(num_seg)
    head = SegmentConsensusHead(num_classes, backbone.out_channels, num_seg=num_seg,
                                drop_ratio=spec.drop_ratio)
    return Recognizer2D(backbone, head)
