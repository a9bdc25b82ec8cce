"""The configuration of Paddle Lite packaging (``vslim-package --target lite``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from vslim.config import ListConfig, PackageConfig
from vslim.errors import ConfigError


@dataclass
class LiteConfig(PackageConfig):
    """``vslim-package --target lite``: Paddle Lite ``.nb`` files, one per target spec.

    ``targets`` holds Lite target specs (``arm``, ``x86``, ``arm,opencl``). x86 files
    are run and compared with Paddle Inference on ``verify_clips`` clips (from
    ``val`` when given); ARM files are checked structurally.
    """

    targets: list[str] = field(default_factory=lambda: ["arm"])
    quant_type: str | None = None
    enable_fp16: bool = False
    rewrite_temporal_shift: bool = True
    verify: bool = True
    verify_clips: int = 16
    val: ListConfig | None = None
    opt_bin: str | None = None

    def validate(self) -> LiteConfig:
        if not self.targets:
            raise ConfigError("give at least one Lite target (arm, x86, arm,opencl)")
        if self.quant_type not in (None, "int8", "int16"):
            raise ConfigError(f"quant_type must be int8 or int16, got {self.quant_type!r}")
        if self.verify_clips < 1:
            raise ConfigError("verify_clips must be >= 1")
        if self.val is not None:
            self.val.validate("val")
        return self
