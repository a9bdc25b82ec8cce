"""One wrapper over Paddle Inference for FP32 and INT8 models on CPU, GPU and TensorRT.

It finds the model files, reads the declared input shape and precision, and
chooses the backend settings that are known to work (docs/architecture.md, Python stack):

* CPU runs oneDNN unless told not to; INT8 (quantize/dequantize) models run INT8
  kernels with the op set recorded at quantization time, or convolutions only
  (``fused_conv2d``), the set that worked on every model measured. Running an INT8
  model without INT8 kernels is allowed (``precision=fp32``) but ~5x slower.
* GPU checks that this Paddle has CUDA (and TensorRT when asked) and says which
  package to install when it has not.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np

from ..config import PredictorConfig
from ..errors import InferenceError, ModelError
from .base import FeedChecks
from .cpu import require_bf16
from .model_info import ModelInfo, inspect_model

SAFE_ONEDNN_INT8_OPS = ("fused_conv2d",)


def _paddle_inference():
    import paddle.inference as pi  # deferred: importing paddle takes seconds

    return pi


class PaddlePredictor(FeedChecks):
    """A Paddle Inference predictor for one model folder (the ``paddle`` runtime).

    ``run`` takes a batch ``[N, num_seg, 3, S, S]`` float32 and returns the first
    output ``[N, num_classes]``; ``run_feeds`` is the general form. A predictor is not
    thread-safe: give each thread its own via :meth:`clone` (weights are shared).
    """

    runtime = "paddle"

    def __init__(self, model_dir: Path | str, config: PredictorConfig | None = None, info: ModelInfo | None = None):
        self.config = (config or PredictorConfig()).validate()
        self.info = info or inspect_model(model_dir)
        self.precision = self._resolve_precision()
        self.probed: dict | None = None
        if self.config.device == "cpu" and self.config.probe:
            self.config = self._safe_settings()
        self.onednn_int8_ops: tuple[str, ...] | None = None
        self.rewritten_shifts = 0
        self._native = self._create()
        self._lock = threading.Lock()
        self.input_names = list(self._native.get_input_names())
        self.output_names = list(self._native.get_output_names())

    # ------------------------------------------------------------------ setup
    def _resolve_precision(self) -> str:
        p = self.config.precision
        if p == "auto":
            return self.info.precision
        if p == "bf16":
            if self.info.quantized:
                self._bf16_int8()
            require_bf16()
        if p == "int8" and not self.info.quantized:
            raise InferenceError(
                f"precision int8 needs a quantized model, but {self.info.model_file} has no quantize ops; "
                "quantize it first with `vslim-quant`"
            )
        return p

    def _safe_settings(self) -> PredictorConfig:
        """The config with the settings the probe found safe for this model on this host (inference/probe.py).

        A bundle carries its packaging host's outcome in ``runtime.json``; elsewhere the probe's cache
        answers, and a model never loaded on this host is loaded in a child process first.
        """
        import dataclasses

        from .probe import needs_probe, probe, recorded_settings, unusable

        chosen = recorded_settings(self.info.model_dir)
        if chosen is None:
            if not needs_probe(self.info.meta):
                return self.config
            result = probe(
                self.info.model_dir,
                self.info.model_file,
                self.info.params_file,
                self.config.precision,
                self.config.threads,
                say=_note,
            )
            if result.chosen is None:
                raise unusable(result, self.info.model_dir)
            if result.fell_back and not result.cached:  # once, when found (vslim info shows it later)
                _note(
                    f"note: {self.info.model_dir} cannot run with Paddle's default settings on this host "
                    f"({result.summary()}); running it with {result.chosen['name']}"
                )
            chosen = result.chosen
        self.probed = chosen
        c = self.config
        return dataclasses.replace(
            c,
            ir_optim=c.ir_optim and chosen["ir_optim"],
            use_onednn=c.use_onednn and chosen["use_onednn"],
            deleted_passes=sorted(set(c.deleted_passes or []) | set(chosen["deleted_passes"])),
        )

    def _bf16_int8(self) -> str:
        raise InferenceError(f"{self.info.model_dir} is an INT8 model: run it as int8, or give the FP32 model for bf16")

    def _program_config(self, pi):
        """A Config holding the model: from its files, or from memory when the program was rewritten."""
        if self.config.device == "cpu" and self.config.rewrite_temporal_shift:
            from .temporal_shift import rewrite_program

            data = self.info.model_file.read_bytes()
            try:
                data, result = rewrite_program(data, all_ratios=True)
            except ModelError:  # e.g. a dynamic spatial size: run the op as it is
                result = None
            if result is not None and result.rewritten:
                self.rewritten_shifts = result.rewritten
                params = self.info.params_file.read_bytes()
                cfg = pi.Config()
                cfg.set_model_buffer(data, len(data), params, len(params))
                return cfg
        return pi.Config(str(self.info.model_file), str(self.info.params_file))

    def _create(self):
        pi = _paddle_inference()
        cfg = self._program_config(pi)
        if self.config.quiet:
            cfg.disable_glog_info()
        cfg.switch_ir_optim(self.config.ir_optim)
        # reuse intermediate buffers, as PaddleVideo's predict.py does: without it a 250-image PP-TSN clip
        # keeps every ResNet activation alive at once (measured: docs/models.md, memory)
        cfg.enable_memory_optim()
        if self.config.device == "gpu":
            self._configure_gpu(cfg, pi)
        else:
            self._configure_cpu(cfg)
        for name in self.config.deleted_passes or ():
            cfg.delete_pass(name)
        try:
            with _native_stderr_silenced(self.config.quiet):
                return pi.create_predictor(cfg)
        except Exception as exc:  # C++ errors arrive as assorted Python exceptions
            first = _first_line(exc)
            onednn = self.config.use_onednn and any(w in first.lower() for w in ONEDNN_WORDS)
            cause = (
                "a oneDNN failure with this model, not damaged files: it may load with oneDNN off "
                "(vslim probes a model it has not seen and falls back by itself)"
                if onednn
                else "the files may be corrupt or from an incompatible Paddle version"
            )
            raise ModelError(
                f"Paddle Inference could not load {self.info.model_file} with "
                f"{self.info.params_file.name}: {first}; {cause}"
            ) from exc

    def _configure_cpu(self, cfg) -> None:
        cfg.disable_gpu()
        cfg.set_cpu_math_library_num_threads(self.config.threads)
        if not self.config.use_onednn:
            cfg.disable_mkldnn()
            if self.precision == "int8":
                raise InferenceError("INT8 on CPU runs on oneDNN: drop --no-onednn or use precision fp32")
            return
        cfg.enable_mkldnn()
        cfg.set_mkldnn_cache_capacity(self.config.onednn_cache_capacity)
        if self.precision == "bf16":
            cfg.enable_mkldnn_bfloat16()
        if self.precision == "int8":
            ops = self.config.onednn_int8_ops or self.info.meta.onednn_int8_ops or list(SAFE_ONEDNN_INT8_OPS)
            self.onednn_int8_ops = tuple(ops)
            # An empty set means "every op oneDNN can quantize".
            cfg.enable_mkldnn_int8(set(o for o in ops if o != "*"))

    def _configure_gpu(self, cfg, pi) -> None:
        import paddle

        if not paddle.device.is_compiled_with_cuda():
            raise InferenceError(
                f"this Paddle build ({paddle.__version__}, CPU only) has no CUDA: install "
                "paddlepaddle-gpu==2.6.2 with CUDA 11.8 / cuDNN 8.6, or use --device cpu"
            )
        if paddle.device.cuda.device_count() < 1:
            raise InferenceError("Paddle has CUDA but sees no GPU (check CUDA_VISIBLE_DEVICES and the driver)")
        c = self.config
        precision = (
            pi.PrecisionType.Half if (self.precision == "fp16" and not c.use_tensorrt) else pi.PrecisionType.Float32
        )
        cfg.enable_use_gpu(c.gpu_mem_mb, c.gpu_id, precision)
        if not c.use_tensorrt:
            if self.precision == "int8":
                raise InferenceError("INT8 on the GPU runs through TensorRT: add --use-tensorrt")
            return
        if pi.get_trt_compile_version() == (0, 0, 0):
            raise InferenceError(
                "this Paddle build has no TensorRT support: install paddlepaddle-gpu built with TensorRT 8.5"
            )
        trt_precision = {
            "fp32": pi.PrecisionType.Float32,
            "fp16": pi.PrecisionType.Half,
            "int8": pi.PrecisionType.Int8,
        }[self.precision]
        cfg.enable_tensorrt_engine(
            workspace_size=c.trt_workspace_mb << 20,
            max_batch_size=c.trt_max_batch_size,
            min_subgraph_size=c.trt_min_subgraph_size,
            precision_mode=trt_precision,
            use_static=c.trt_use_static,
            use_calib_mode=False,  # INT8 scales come from the quantized model
        )
        if c.trt_cache_dir:
            cfg.set_optim_cache_dir(c.trt_cache_dir)
        if c.trt_dynamic_shape:
            cfg.set_trt_dynamic_shape_info(*self.trt_shape_ranges())

    def trt_shape_ranges(self) -> tuple[dict, dict, dict]:
        """``(min, max, opt)`` input shapes for TensorRT's dynamic-shape profile (batch varies)."""
        c = self.config
        mins, maxs, opts = {}, {}, {}
        for spec in self.info.inputs:
            rest = [d if d > 0 else 1 for d in spec.shape[1:]]
            mins[spec.name] = [c.trt_min_batch] + rest
            maxs[spec.name] = [c.trt_max_batch_size] + rest
            opts[spec.name] = [c.trt_opt_batch] + rest
        return mins, maxs, opts

    # ------------------------------------------------------------------ running
    def run_feeds(self, feeds: dict[str, np.ndarray], fetch: list[str] | None = None) -> dict[str, np.ndarray]:
        """Run one batch; ``feeds`` must name every model input."""
        arrays, fetch = self.checked_feeds(feeds, fetch)
        with self._lock:
            for name, arr in arrays.items():
                self._native.get_input_handle(name).copy_from_cpu(arr)
            try:
                self._native.run()
            except Exception as exc:
                raise InferenceError(f"inference failed: {_first_line(exc)}") from exc
            return {n: self._native.get_output_handle(n).copy_to_cpu() for n in fetch}

    def clone(self) -> PaddlePredictor:
        """Another predictor sharing this one's weights, for use on another thread."""
        clone = object.__new__(PaddlePredictor)
        clone.config, clone.info, clone.precision = self.config, self.info, self.precision
        clone.onednn_int8_ops = self.onednn_int8_ops
        clone.probed = self.probed
        clone.rewritten_shifts = self.rewritten_shifts
        clone._native = self._native.clone()
        clone._lock = threading.Lock()
        clone.input_names, clone.output_names = list(self.input_names), list(self.output_names)
        return clone

    def describe(self) -> dict:
        """Settings for reports: what actually ran."""
        c = self.config
        d: dict[str, Any] = {
            "model": str(self.info.model_dir),
            "runtime": self.runtime,
            "precision": self.precision,
            "device": c.device,
        }
        if c.device == "cpu":
            d.update(
                threads=c.threads,
                onednn=c.use_onednn,
                onednn_int8_ops=list(self.onednn_int8_ops or []),
                temporal_shift_rewritten=self.rewritten_shifts,
                ir_optim=c.ir_optim,
                deleted_passes=list(c.deleted_passes or []),
            )
            if self.probed is not None:
                d["probed_settings"] = self.probed["name"]
        else:
            d.update(tensorrt=c.use_tensorrt, gpu_id=c.gpu_id)
        return d


ONEDNN_WORDS = ("onednn", "mkldnn", "dnnl", "memory descriptor")


def _note(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    # Paddle's C++ errors carry a long stack; the summary is the line naming the error.
    for line in text.splitlines():
        line = line.strip()
        if line and ("Error" in line or "error" in line) and not line.startswith("C++"):
            return line[:500]
    return text.splitlines()[0][:500] if text else type(exc).__name__


@contextlib.contextmanager
def _native_stderr_silenced(enabled: bool):
    """Mute what Paddle's C++ passes print straight to fd 2 ("squashed 17 dequantize-quantize pairs").

    ``disable_glog_info`` does not reach those prints. Errors still surface: they
    come back as exceptions, whose text is not written to fd 2.
    """
    if not enabled:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
