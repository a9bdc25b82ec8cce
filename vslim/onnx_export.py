"""``vslim-package --target onnx``: the inference model as ONNX (paddle2onnx, opset 13), checked.

The conversion and its check against Paddle Inference are the inference layer's (``inference/conversion.py``),
the same that the ``openvino`` and ``onnxruntime`` runtimes run, temporal shifts rewritten (``onnx_shift``);
this target writes them out as a package: ``model.onnx``, ``vslim.json`` and ``onnx_report.json``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .config import PackageConfig
from .fsio import atomic_output_dir, check_output_free, write_json
from .inference import inspect_model
from .inference.conversion import MIN_COSINE, ONNX_FILE, REPORT_FILE, convert

__all__ = ["MIN_COSINE", "OnnxConfig", "export_onnx"]


@dataclass
class OnnxConfig(PackageConfig):
    """``vslim-package --target onnx``: nothing beyond the common options (the file is always ``model.onnx``)."""

    def validate(self) -> OnnxConfig:
        return self


def export_onnx(cfg: OnnxConfig, say: Callable[[str], None] = lambda _: None) -> dict:
    """Convert, check against Paddle on a seeded batch, write ``model.onnx`` + ``vslim.json`` + a report."""
    check_output_free(cfg.output_dir, cfg.overwrite)
    info = inspect_model(cfg.model_dir, paddlevideo_config=cfg.paddlevideo_config)
    with atomic_output_dir(cfg.output_dir, overwrite=cfg.overwrite) as tmp:
        report = convert(info, tmp / ONNX_FILE)
        info.meta.derive(model_file=ONNX_FILE, params_file=None, source=str(info.model_dir)).save(tmp)
        write_json(tmp / REPORT_FILE, report)
    return report
