"""The registry of inference runtimes: one row per runtime, read by everything that names one.

The CLI's ``--runtime`` choices, config validation, ``--runtime auto``'s candidates, the "not installed"
messages and the factory ``open_predictor`` calls all come from these rows, so a new runtime is one module
(a class satisfying :class:`vslim.inference.base.Predictor`) and one :func:`register` call. A row names its
factory as ``"module:attribute"`` (or gives the callable itself), so reading the registry imports no runtime:
the CLI can list choices without loading Paddle, OpenVINO or ONNX Runtime.

This module is a leaf (it imports only :mod:`vslim.errors` and :mod:`vslim.registry`) because the config layer
validates against it.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

from .errors import ConfigError
from .registry import Registry, load_attribute

AUTO = "auto"  # not a runtime: the bundle's measured choice (runtime.json), else the reference
REFERENCE = "paddle"  # the default runtime, and what every other runtime is checked against


@dataclass(frozen=True)
class Runtime:
    """One runtime: what it can run, what it needs installed, and how to build its predictor.

    ``factory(model_dir, config, info)`` returns the predictor; a runtime with a ``conversion`` is also given
    ``cache=``, ``record_checks=`` and ``reference=`` (where its converted model and its check against Paddle
    are kept, and Paddle's outputs when the caller has them).
    ``conversion``: the format the runtime runs the model in when not Paddle's own (``"onnx"``: converted once,
    cached by content, checked against Paddle). ``own_int8``: the function (``"module:attribute"``) with which
    the runtime calibrates its own INT8 of an FP32 model from the conversion and clips, saved beside the
    conversion (OpenVINO's NNCF at packaging with ``--calib-list``); ``own_int8_label`` names it in tables. ``runs_int8_in_float``: it can run a
    quantized model's graph in FP32 (Paddle); others refuse a quantized model in a float precision.
    ``int8_without_vnni``: why this runtime's INT8 may disagree on a CPU without VNNI, when that explains it.
    """

    name: str
    precisions: tuple[str, ...]
    factory: str | Callable[..., Any]
    modules: tuple[str, ...] = ()  # importable when installed
    extra: str = ""  # pip extra that installs it: vslim[extra]
    devices: tuple[str, ...] = ("cpu",)
    conversion: str | None = None
    own_int8: str | Callable[..., Any] = ""
    own_int8_label: str = ""
    runs_int8_in_float: bool = False
    int8_without_vnni: str = ""
    summary: str = ""

    def available(self) -> bool:
        """Installed here: every module it needs can be found (nothing is imported)."""
        return all(importlib.util.find_spec(m) is not None for m in self.modules)

    def install_hint(self) -> str:
        return f"pip install -c constraints.txt 'vslim[{self.extra}]'" if self.extra else "pip install vslim"

    def require(self) -> Runtime:
        """This row with its modules imported, or a ConfigError saying how to install it (a module that is
        there but fails to import, e.g. a missing shared library, counts as not installed)."""
        try:
            if not self.available():
                raise ImportError(", ".join(m for m in self.modules if importlib.util.find_spec(m) is None))
            for module in self.modules:
                importlib.import_module(module)
        except ImportError as exc:
            raise ConfigError(f"runtime {self.name} is not installed ({exc}): {self.install_hint()}") from None
        return self

    def load_factory(self) -> Callable[..., Any]:
        return load_attribute(self.factory)

    def load_own_int8(self) -> Callable[..., Any]:
        return load_attribute(self.own_int8)


def _check(name: str, row: Any) -> None:
    if name == AUTO or not name.isidentifier():
        raise ValueError(f"a runtime needs a name other than {AUTO!r} that is an identifier, got {name!r}")


_RUNTIMES: Registry[Runtime] = Registry(check=_check)


def register(row: Runtime) -> Runtime:
    """Add a runtime (or replace the row of the same name)."""
    _RUNTIMES.register(row.name, row)
    return row


def unregister(name: str) -> None:
    _RUNTIMES.unregister(name)


def registered(row: Runtime) -> AbstractContextManager[Runtime]:
    """A runtime registered for the duration of a ``with`` block (tests, experiments)."""
    return _RUNTIMES.registered(row.name, row)


def names() -> tuple[str, ...]:
    """Every registered runtime, in registration order (the order ``auto`` measures them in)."""
    return tuple(_RUNTIMES.names())


def choices() -> list[str]:
    """What ``--runtime`` accepts: ``auto`` and every runtime."""
    return [AUTO, *_RUNTIMES.names()]


def get(name: str) -> Runtime:
    """The row of ``name``, or a ConfigError listing the choices."""
    row = _RUNTIMES.get(name)
    if row is None:
        raise ConfigError(f"unknown runtime {name!r}; choose one of {', '.join(choices())}")
    return row


def rows() -> list[Runtime]:
    return _RUNTIMES.rows()


def check_name(name: str, flag: str = "runtime") -> str:
    """``name`` when it is ``auto`` or a registered runtime, else a ConfigError naming the choices."""
    if name != AUTO and name not in _RUNTIMES:
        raise ConfigError(f"{flag} must be one of {', '.join(choices())}, got {name!r}")
    return name


register(
    Runtime(
        "paddle",
        ("fp32", "bf16", "int8"),
        "vslim.inference.predictor:PaddlePredictor",
        modules=("paddle",),
        extra="cpu",
        devices=("cpu", "gpu"),
        runs_int8_in_float=True,
        summary="Paddle Inference with oneDNN (GPU and TensorRT with paddlepaddle-gpu)",
    )
)
register(
    Runtime(
        "openvino",
        ("fp32", "bf16", "int8"),
        "vslim.inference.runtimes.openvino_cpu:OpenVinoPredictor",
        modules=("openvino",),
        extra="openvino",
        conversion="onnx",
        own_int8="vslim.inference.runtimes.openvino_cpu:make_nncf_int8",
        own_int8_label="nncf",
        summary="OpenVINO on the model converted to ONNX; INT8 from PaddleSlim's QDQ or its own NNCF calibration",
    )
)
register(
    Runtime(
        "onnxruntime",
        ("fp32", "int8"),
        "vslim.inference.runtimes.onnxruntime_cpu:OnnxRuntimePredictor",
        modules=("onnxruntime",),
        extra="onnx",
        conversion="onnx",
        int8_without_vnni=(
            "ONNX Runtime's INT8 kernels without VNNI multiply u8 x s8 with 16-bit saturation (vpmaddubsw), "
            "which loses precision; the conversion itself was checked with optimisations off and matches Paddle"
        ),
        summary="ONNX Runtime's CPU provider on the model converted to ONNX (QDQ for INT8)",
    )
)
