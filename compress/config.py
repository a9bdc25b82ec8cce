"""Configs of the compression passes: post-training quantization, quantization-aware training, pruning."""

from __future__ import annotations

from dataclasses import dataclass, field

from vslim.config import ListConfig, PreprocessConfig
from vslim.errors import ConfigError

PTQ_ALGOS = ("KL", "hist", "mse", "avg", "abs_max")


@dataclass
class PTQConfig:
    """Post-training quantization of an inference model (``vslim-quant``).

    ``algo`` is one of :data:`PTQ_ALGOS` or ``auto``: try ``candidates``, evaluate
    each on ``val`` and keep the most accurate one whose top-1 drop is at most
    ``tolerance`` (absolute, 0.01 = one point).
    """

    model_dir: str
    output_dir: str
    calib: ListConfig
    val: ListConfig | None = None
    algo: str = "hist"
    candidates: list[str] = field(default_factory=lambda: ["avg", "abs_max", "hist", "mse"])
    tolerance: float = 0.01
    batch_size: int = 4
    batch_nums: int | None = None
    quantize_ops: list[str] = field(default_factory=lambda: ["conv2d", "depthwise_conv2d"])
    hist_percent: float = 0.9999
    bias_correction: bool = False
    onnx_format: bool = True
    preprocess: PreprocessConfig | None = None
    model_filename: str | None = None
    params_filename: str | None = None
    threads: int = 2
    measure_latency: bool = True
    overwrite: bool = False

    def validate(self) -> PTQConfig:
        algos = {a.lower(): a for a in PTQ_ALGOS}
        if self.algo != "auto":
            if self.algo.lower() not in algos:
                raise ConfigError(f"unknown PTQ algorithm {self.algo!r}; choose one of {', '.join(PTQ_ALGOS)} or auto")
            self.algo = algos[self.algo.lower()]
        bad = [c for c in self.candidates if c.lower() not in algos]
        if bad:
            raise ConfigError(f"unknown PTQ candidate algorithm(s) {bad}; choose from {PTQ_ALGOS}")
        self.candidates = [algos[c.lower()] for c in self.candidates]
        if self.algo == "auto" and self.val is None:
            raise ConfigError("algo 'auto' picks the best algorithm on a labelled validation list: give val")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.batch_nums is not None and self.batch_nums < 1:
            raise ConfigError(f"batch_nums must be >= 1, got {self.batch_nums}")
        if not 0 <= self.tolerance < 1:
            raise ConfigError(f"tolerance is a top-1 fraction in [0, 1), got {self.tolerance}")
        self.calib.validate("calib")
        if self.val is not None:
            self.val.validate("val")
        if self.preprocess is not None:
            self.preprocess.validate()
        return self


@dataclass
class QATConfig:
    """``vslim compress qat``: quantization-aware training from trained FP32 weights.

    Defaults follow PaddleVideo's deploy/slim advice: start from trained weights,
    a learning rate 1/20-1/10 of normal training (``lr`` None: 1/10 of the
    default 0.003) with warm-up, 1/5-1/2 of the epochs (``epochs`` None: 1/3 of
    the weights' own training, at least 2).
    """

    weights: str
    train: ListConfig
    val: ListConfig
    output_dir: str
    arch: str | None = None
    epochs: int | None = None
    lr: float | None = None
    warmup_epochs: float = 0.5
    batch_size: int = 16
    quantizable_layers: list[str] = field(default_factory=lambda: ["Conv2D", "Linear"])
    weight_quantize_type: str = "channel_wise_abs_max"
    activation_quantize_type: str = "moving_average_abs_max"
    ptq_model: str | None = None
    seed: int = 0
    threads: int = 2
    workers: int = 2
    resume: bool = False
    overwrite: bool = False

    def validate(self) -> QATConfig:
        if self.epochs is not None and self.epochs < 1:
            raise ConfigError(f"epochs must be >= 1, got {self.epochs}")
        if self.lr is not None and self.lr <= 0:
            raise ConfigError(f"lr must be > 0, got {self.lr}")
        if self.weight_quantize_type not in ("channel_wise_abs_max", "abs_max"):
            raise ConfigError("weight_quantize_type must be channel_wise_abs_max or abs_max")
        if self.activation_quantize_type not in ("moving_average_abs_max", "abs_max"):
            raise ConfigError("activation_quantize_type must be moving_average_abs_max or abs_max")
        self.train.validate("train")
        self.val.validate("val")
        return self


@dataclass
class PruneConfig:
    """``vslim compress prune``: structured filter pruning with fine-tuning.

    Exactly one of ``ratio`` (the same fraction of filters off every prunable conv)
    and ``flops_target`` (the fraction of FLOPs to remove) is given. With
    ``sensitivity`` the per-layer ratios come from measured accuracy drops.
    """

    weights: str
    train: ListConfig
    val: ListConfig
    output_dir: str
    arch: str | None = None
    ratio: float | None = None
    flops_target: float | None = None
    criterion: str = "l1"
    sensitivity: bool = False
    sensitivity_ratios: list[float] = field(default_factory=lambda: [0.1, 0.3, 0.5])
    sensitivity_clips: int = 50
    finetune_epochs: int = 5
    lr: float = 0.002
    batch_size: int = 16
    seed: int = 0
    workers: int = 2
    resume: bool = False
    overwrite: bool = False

    def validate(self) -> PruneConfig:
        if (self.ratio is None) == (self.flops_target is None):
            raise ConfigError(
                "give exactly one of --ratio (filters to prune per layer) and --flops-target "
                "(fraction of FLOPs to remove)"
            )
        for name in ("ratio", "flops_target"):
            value = getattr(self, name)
            if value is not None and not 0 < value < 1:
                raise ConfigError(f"{name.replace('_', '-')} must be between 0 and 1 (exclusive), got {value}")
        if self.criterion not in ("l1", "l2", "fpgm"):
            raise ConfigError(f"criterion must be l1, l2 or fpgm, got {self.criterion!r}")
        if self.finetune_epochs < 0:
            raise ConfigError("finetune_epochs must be >= 0")
        if any(not 0 < r < 1 for r in self.sensitivity_ratios):
            raise ConfigError("sensitivity ratios must lie in (0, 1)")
        self.train.validate("train")
        self.val.validate("val")
        return self
