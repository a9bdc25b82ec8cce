"""The inference backends a benchmark compares, each behind one ``run(batch) -> output`` callable.

A backend that cannot run here (no GPU, no TensorRT, an INT8 model on plain CPU
kernels) raises :class:`BackendUnavailable` with the reason, and the benchmark
lists it as skipped with that reason instead of dropping it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vslim.config import PredictorConfig
from vslim.errors import ConfigError, VslimError
from vslim.inference import PaddlePredictor
from vslim.inference.model_info import ModelInfo

BACKENDS = ("paddle-cpu", "paddle-onednn", "paddle-bf16", "paddle-gpu", "paddle-trt", "onnxruntime", "openvino")
PEER = "onnxruntime"
# What a user builds by hand with the peer runtimes from the FP32 model (paddle2onnx's graph as it comes, their
# own INT8 calibration on the same clips, OpenVINO's default precision): the rows vslim's own configurations are
# held against. OpenVINO fp32/bf16 are vslim's runtime (its conversion, temporal shifts rewritten).
PEER_BUILT = {
    ("openvino", "default-hint"),
    ("openvino", "nncf-int8"),
    ("onnxruntime", ""),
    ("onnxruntime", "quantize-static-int8"),
}
# Of those, what vslim also deploys: vslim-package --calib-list makes OpenVINO's NNCF INT8 too — from its own
# conversion, so this row (the plain graph's) is a lower bound of vslim's
VSLIM_DEPLOYS = {("openvino", "nncf-int8")}
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
    if backend == "openvino":
        names = ["int8-qdq"] if info.quantized else ["fp32", "bf16", "default-hint", "nncf-int8"]
        return [BackendRun(backend, n) for n in names]
    if backend == "onnxruntime" and not info.quantized:
        return [BackendRun(backend), BackendRun(backend, "quantize-static-int8")]
    if backend == "paddle-trt":
        return (
            [BackendRun(backend, "int8")]
            if info.quantized
            else [BackendRun(backend, "fp32"), BackendRun(backend, "fp16")]
        )
    return [BackendRun(backend)]


def _paddle(info: ModelInfo, cfg: PredictorConfig) -> Runner:
    try:
        return PaddlePredictor(info.model_dir, cfg, info).run
    except VslimError as exc:
        raise BackendUnavailable(str(exc)) from None


def onnx_file(info: ModelInfo, cache: Path | None) -> Path:
    """The model as a user converting by hand has it: paddle2onnx's graph, without vslim's rewrites, checked
    against Paddle and cached by the model files' content (a re-export into the same folder converts anew)."""
    from vslim.inference.conversion import converted_onnx

    return converted_onnx(info, cache, plain=True)


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


def _vslim_runtime(info: ModelInfo, runtime: str, precision: str, threads: int, cache: Path) -> Runner:
    """vslim's own runtime predictor (the same one ``--runtime`` serves with)."""
    from vslim.inference.runtimes import open_predictor

    try:
        return open_predictor(
            info.model_dir, PredictorConfig(runtime=runtime, precision=precision, threads=threads), info, cache=cache
        ).run
    except VslimError as exc:
        raise BackendUnavailable(str(exc)) from None


def _calibration_clips(calib: np.ndarray | None, who: str) -> np.ndarray:
    """The clips a peer's own INT8 calibrates on; make_runner's ``calib`` is optional for every other backend."""
    if calib is None:
        raise ConfigError(f"{who} calibrates on clips: pass make_runner(..., calib=clips)")
    return calib


def _openvino_peer(info: ModelInfo, variant: str, threads: int, cache: Path, calib: np.ndarray | None) -> Runner:
    """OpenVINO as a user would set it up by hand: its default precision, or NNCF's INT8 from the FP32 model."""
    try:
        import openvino as ov
    except ImportError:
        raise BackendUnavailable("openvino is not installed (pip install 'vslim[openvino]')") from None
    core = ov.Core()
    model = core.read_model(str(onnx_file(info, cache)))
    if variant == "nncf-int8":
        import nncf

        clips = _calibration_clips(calib, "OpenVINO's NNCF INT8")
        model = nncf.quantize(model, nncf.Dataset([c[None] for c in clips]), subset_size=len(clips))
    compiled: dict[int, Any] = {}  # openvino.InferRequest per batch size

    def run(x: np.ndarray) -> np.ndarray:
        if len(x) not in compiled:
            m = model.clone()
            m.reshape({m.inputs[0].get_any_name(): list(x.shape)})
            compiled[len(x)] = core.compile_model(
                m, "CPU", {"INFERENCE_NUM_THREADS": threads, "NUM_STREAMS": 1, "PERFORMANCE_HINT": "LATENCY"}
            ).create_infer_request()
        return np.array(compiled[len(x)].infer([x])[0])

    return run


def ort_int8_file(info: ModelInfo, cache: Path | None, calib: np.ndarray | None) -> Path:
    """ONNX Runtime's own static INT8 (U8S8 QDQ, the fast form) of the FP32 model, calibrated on ``calib``
    and kept beside the conversion."""
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationDataReader, QuantType, quantize_static

    source = onnx_file(info, cache)
    target = source.with_name("model.ort-int8.onnx")
    if not target.is_file():
        clips = _calibration_clips(calib, "ONNX Runtime's quantize_static INT8")
        name = ort.InferenceSession(str(source), providers=["CPUExecutionProvider"]).get_inputs()[0].name

        class Reader(CalibrationDataReader):
            def __init__(self):
                self.items = (({name: clips[i][None]}) for i in range(len(clips)))

            def get_next(self):
                return next(self.items, None)

        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.ERROR)  # its advice on pre-processing, once per layer, is not for our users
        staging = target.with_name(".model.ort-int8.onnx.partial")
        try:
            quantize_static(
                str(source), str(staging), Reader(), activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8
            )
            staging.rename(target)
        finally:
            root.setLevel(level)
            staging.unlink(missing_ok=True)
    return target


def _ort_quantized(info: ModelInfo, threads: int, cache: Path, calib: np.ndarray | None) -> Runner:
    """ONNX Runtime's ``quantize_static`` INT8 with ``threads`` intra-op threads."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(ort_int8_file(info, cache, calib)), options, providers=["CPUExecutionProvider"])
    feed = session.get_inputs()[0].name
    return lambda x: session.run(None, {feed: x})[0]


def make_runner(
    run: BackendRun,
    info: ModelInfo,
    threads: int,
    max_batch: int,
    cache: Path,
    opt_batch: int | None = None,
    calib: np.ndarray | None = None,
) -> Runner:
    """A callable running ``info``'s model on ``run``'s backend, or BackendUnavailable."""
    if run.backend == "paddle-bf16":
        if info.quantized:
            raise BackendUnavailable("BF16 runs FP32 models; this one is INT8")
        return _vslim_runtime(info, "paddle", "bf16", threads, cache)
    if run.backend == "openvino":
        if run.variant in ("fp32", "bf16", "int8-qdq"):
            return _vslim_runtime(info, "openvino", run.variant.removesuffix("-qdq"), threads, cache)
        return _openvino_peer(info, run.variant, threads, cache, calib)
    if run.backend == "onnxruntime" and run.variant == "quantize-static-int8":
        return _ort_quantized(info, threads, cache, calib)
    if run.backend == "paddle-cpu":
        if info.quantized:
            raise BackendUnavailable(
                "INT8 models run INT8 kernels on oneDNN only; plain CPU kernels would "
                "simulate quantization in FP32 (see paddle-onednn)"
            )
        return _paddle(info, PredictorConfig(threads=threads, use_onednn=False))
    if run.backend == "paddle-onednn":
        return _paddle(info, PredictorConfig(threads=threads))
    if run.backend == "paddle-gpu":
        if info.quantized:
            raise BackendUnavailable("INT8 on the GPU runs through TensorRT (see paddle-trt)")
        return _paddle(info, PredictorConfig(device="gpu"))
    if run.backend == "paddle-trt":
        return _paddle(
            info,
            PredictorConfig(
                device="gpu",
                use_tensorrt=True,
                precision=run.variant,
                trt_max_batch_size=max_batch,
                trt_opt_batch=opt_batch or 1,
            ),
        )
    if run.backend == "onnxruntime":
        return _onnxruntime(info, threads, cache)
    raise BackendUnavailable(f"unknown backend {run.backend!r}; known: {', '.join(BACKENDS)}")
