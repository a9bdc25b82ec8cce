"""Opening a model on the runtime a config names: the rows of :mod:`vslim.runtime_registry` put to use.

Which runtime and precision is fastest depends on the CPU (docs/architecture.md, CPU runtimes), so besides
Paddle Inference each runtime runs the same model vslim made, converted once (``conversion.py``: paddle2onnx,
QDQ for PaddleSlim's INT8 so the user's calibration is kept), and is checked against Paddle before it answers
(``converted.py``). The runtimes' own modules (``onnxruntime_cpu.py``, ``openvino_cpu.py``) are imported only
when a model is opened on them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ... import runtime_registry
from ...config import PredictorConfig
from ...errors import ConfigError
from ..base import Predictor
from ..cpu import VNNI_FLAGS, cpu_flags, require_bf16
from ..model_info import ModelInfo


def check_precision(runtime: str, precision: str, info: ModelInfo, own_int8: bool = False) -> str:
    """The precision to run, or a ConfigError naming what to change.

    ``own_int8``: the runtime's own INT8 of this FP32 model exists (OpenVINO's NNCF, made at packaging with
    ``--calib-list``), so it can run this FP32 model as INT8.
    """
    row = runtime_registry.get(runtime)
    if precision == "auto":
        return info.precision
    if precision not in row.precisions:
        raise ConfigError(f"{runtime} has no {precision} on CPU; choose one of {', '.join(row.precisions)}")
    if precision == "int8" and not info.quantized and not (row.own_int8 and own_int8):
        raise ConfigError(
            f"precision int8 needs a quantized model, but {info.model_file} has none; quantize it "
            "with vslim-quant (the INT8 model keeps your calibration on every runtime)"
            + (", or package it with --calib-list for the runtime's own INT8" if row.own_int8 else "")
        )
    if precision == "bf16":
        require_bf16()
    if info.quantized and precision != "int8" and not row.runs_int8_in_float:
        raise ConfigError(f"{info.model_dir} is an INT8 model: run it as int8, or give the FP32 model for {precision}")
    return precision


def likely_cause(runtime: str, precision: str) -> str:
    """Why a runtime's INT8 may disagree on this CPU, when the ISA explains it (measured on an AVX2-only host)."""
    if precision != "int8" or cpu_flags() & set(VNNI_FLAGS):
        return ""
    row = runtime_registry.get(runtime)
    if not row.int8_without_vnni:
        return ""
    return f" — likely cause: this CPU has no VNNI ({', '.join(VNNI_FLAGS)}), and {row.int8_without_vnni}"


def open_predictor(
    model_dir: Path | str,
    config: PredictorConfig | None = None,
    info: ModelInfo | None = None,
    cache: Path | None = None,
    warn: Callable[[str], None] = lambda message: None,
    record_checks: bool | None = None,
    reference: dict | None = None,
) -> Predictor:
    """The predictor of ``config.runtime`` for ``model_dir`` (Paddle Inference by default).

    ``auto`` takes the choice recorded in a bundle's ``runtime.json`` (the default runtime when there is none,
    or when the recorded runtime is not installed: ``warn`` says so). ``cache``: where conversions are kept
    (a bundle keeps its own). ``reference``: Paddle's outputs on ``seeded_feeds(inputs)``, when the caller has
    them (the conversion check then loads no Paddle model).
    """
    config = (config or PredictorConfig()).validate()
    if record_checks is None:
        record_checks = cache is None  # the user's cache takes new checks; a bundle's stays as packaged
    if config.runtime == runtime_registry.AUTO or cache is None:
        from ..recorded import resolve

        config, found = resolve(config, model_dir, warn)
        record_checks = record_checks and found is None
        cache = cache or found
    row = runtime_registry.get(config.runtime)
    if config.device not in row.devices:
        others = [r.name for r in runtime_registry.rows() if config.device in r.devices]
        raise ConfigError(
            f"runtime {row.name} runs on {' or '.join(row.devices)} here, not {config.device}; "
            f"use --runtime {' or '.join(others) or runtime_registry.REFERENCE} for the {config.device}"
        )
    factory = row.require().load_factory()
    if row.conversion is None:
        return factory(model_dir, config, info)
    return factory(model_dir, config, info, cache=cache, record_checks=record_checks, reference=reference)
