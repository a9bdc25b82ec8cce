"""The inference backends a benchmark compares, each behind one ``run(batch) -> output`` callable.

A backend that cannot run here (no GPU, no TensorRT, an INT8 model on plain CPU
kernels) raises :class:`BackendUnavailable` with the reason, and the benchmark
lists it as skipped with that reason instead of dropping it.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from vslim.config import PredictorConfig
from vslim.errors import VslimError
from vslim.inference import Predictor
from vslim.inference.predictor import ModelInfo

BACKENDS = ("paddle-cpu", "paddle-onednn", "paddle-gpu", "paddle-trt", "onnxruntime")
PEER = "onnxruntime"
Runner = Callable[[np.ndarray], np.ndarray]


class BackendUnavailable(Exception):
    """This backend cannot run this model on this machine; the message says why."""


@dataclass(frozen=True)
class BackendRun:
    """One backend configuration: ``paddle-trt`` comes in precision variants."""

    backend: str
    variant: str = ""

    @property
    def label(self) -> str:
        return f"{self.backend} ({self.variant})" if self.variant else self.backend


def variants(backend: str, info: ModelInfo) -> list[BackendRun]:
    if backend == "paddle-trt":
        return [BackendRun(backend, "int8")] if info.quantized else [BackendRun(backend, "fp32"),
                                                                     BackendRun(backend, "fp16")]
    return [BackendRun(backend)]


def _paddle(info: ModelInfo, cfg: PredictorConfig) -> Runner:
    try:
        return Predictor(info.model_dir, cfg, info).run
    except VslimError as exc:
        raise BackendUnavailable(str(exc)) from None


def onnx_file(info: ModelInfo, cache: Path) -> Path:
    """The model converted with paddle2onnx (opset 13), cached per model folder."""
    from vslim.onnx_export import export_onnx

    key = hashlib.sha1(str(info.model_dir.resolve()).encode()).hexdigest()[:10]
    target = cache / f"{info.model_dir.resolve().name}-{key}"
    if not (target / "model.onnx").is_file():
        export_onnx(info.model_dir, target, overwrite=True)
    return target / "model.onnx"


def _onnxruntime(info: ModelInfo, threads: int, cache: Path) -> Runner:
    try:
        import onnxruntime as ort
    except ImportError:
        raise BackendUnavailable("onnxruntime is not installed (pip install onnxruntime paddle2onnx==1.3.1)") from None
    try:
        path = onnx_file(info, cache)
    except VslimError as exc:
        raise BackendUnavailable(f"paddle2onnx could not convert the model: {exc}") from None
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda x: session.run(None, {name: x})[0]


def make_runner(run: BackendRun, info: ModelInfo, threads: int, max_batch: int, cache: Path,
                opt_batch: Optional[int] = None) -> Runner:
    """A callable running ``info``'s model on ``run``'s backend, or BackendUnavailable."""
    if run.backend == "paddle-cpu":
        if info.quantized:
            raise BackendUnavailable("INT8 models run INT8 kernels on oneDNN only; plain CPU kernels would "
                                     "simulate quantization in FP32 (see paddle-onednn)")
        return _paddle(info, PredictorConfig(threads=threads, use_onednn=False))
    if run.backend == "paddle-onednn":
        return _paddle(info, PredictorConfig(threads=threads))
    if run.backend == "paddle-gpu":
        if info.quantized:
            raise BackendUnavailable("INT8 on the GPU runs through TensorRT (see paddle-trt)")
        return _paddle(info, PredictorConfig(device="gpu"))
    if run.backend == "paddle-trt":
        return _paddle(info, PredictorConfig(device="gpu", use_tensorrt=True, precision=run.variant,
                                             trt_max_batch_size=max_batch, trt_opt_batch=opt_batch or 1))
    if run.backend == "onnxruntime":
        return _onnxruntime(info, threads, cache)
    raise BackendUnavailable(f"unknown backend {run.backend!r}; known: {', '.join(BACKENDS)}")
