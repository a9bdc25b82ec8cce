"""The predictor interface every runtime satisfies, and the input checks they share.

The serving engine, the CLI, the benchmarks and Ray's replicas are typed to :class:`Predictor`, never to one
runtime's class: a runtime is a class with these members plus a row in :mod:`vslim.runtime_registry`.
:class:`FeedChecks` gives a runtime the shared half (input checks, ``run``, ``run_batched``) so every runtime
refuses a bad feed in the same words; a runtime then writes ``run_feeds``, ``clone`` and ``describe``.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from ..errors import InferenceError
from ..model_meta import ModelMeta
from .model_info import ModelInfo
from .program import TensorSpec


@runtime_checkable
class Predictor(Protocol):
    """One loaded model on one runtime. Not thread-safe: each thread runs its own :meth:`clone`."""

    info: ModelInfo
    runtime: str  # the registry row's name
    precision: str  # what runs: fp32, bf16, int8 (fp16 on GPU)
    input_names: list[str]
    output_names: list[str]

    @property
    def inputs(self) -> tuple[TensorSpec, ...]: ...

    @property
    def outputs(self) -> tuple[TensorSpec, ...]: ...

    @property
    def input_spec(self) -> TensorSpec: ...

    @property
    def meta(self) -> ModelMeta: ...

    def run_feeds(self, feeds: dict[str, np.ndarray], fetch: list[str] | None = None) -> dict[str, np.ndarray]:
        """Every output asked for (all by default) for one batch naming every model input."""
        ...

    def run(self, clips: np.ndarray) -> np.ndarray:
        """The first output for a batch of the first input."""
        ...

    def run_batched(self, clips: np.ndarray, batch_size: int) -> np.ndarray: ...

    def clone(self) -> Predictor:
        """Another predictor sharing this one's weights, for another thread."""
        ...

    def describe(self) -> dict:
        """What actually runs, for reports and ``/v2/models/NAME/config``: runtime, precision, settings."""
        ...


class FeedChecks:
    """The runtime-independent half of a predictor: declared inputs and outputs, the input checks, ``run``."""

    info: ModelInfo
    input_names: list[str]
    output_names: list[str]

    @property
    def inputs(self) -> tuple[TensorSpec, ...]:
        return self.info.inputs

    @property
    def outputs(self) -> tuple[TensorSpec, ...]:
        return self.info.outputs

    @property
    def input_spec(self) -> TensorSpec:
        return self.info.inputs[0]

    @property
    def meta(self) -> ModelMeta:
        return self.info.meta

    def check_input(self, name: str, array: np.ndarray) -> np.ndarray:
        spec = next((s for s in self.info.inputs if s.name == name), None)
        if spec is None:
            raise InferenceError(f"model has no input {name!r}; inputs: {[s.name for s in self.info.inputs]}")
        array = np.asarray(array)
        if array.ndim != len(spec.shape) or any(d > 0 and d != a for d, a in zip(spec.shape, array.shape)):
            raise InferenceError(
                f"input {name!r} has shape {list(array.shape)} but the model expects {list(spec.shape)} (-1 = any size)"
            )
        if array.shape[0] == 0:
            raise InferenceError(f"input {name!r} is an empty batch")
        if array.dtype != spec.dtype:
            if np.issubdtype(spec.dtype, np.floating) and np.issubdtype(array.dtype, np.floating):
                array = array.astype(spec.dtype)
            else:
                raise InferenceError(f"input {name!r} has dtype {array.dtype} but the model expects {spec.dtype}")
        return np.ascontiguousarray(array)

    def checked_feeds(
        self, feeds: dict[str, np.ndarray], fetch: list[str] | None
    ) -> tuple[dict[str, np.ndarray], list[str]]:
        """Every model input checked and contiguous, and the outputs to return (all by default)."""
        missing = [n for n in self.input_names if n not in feeds]
        if missing:
            raise InferenceError(f"missing input(s) {missing}; the model takes {self.input_names}")
        fetch = fetch or self.output_names
        unknown = [n for n in fetch if n not in self.output_names]
        if unknown:
            raise InferenceError(f"unknown output(s) {unknown}; the model gives {self.output_names}")
        return {n: self.check_input(n, feeds[n]) for n in self.input_names}, fetch

    def run_feeds(self, feeds: dict[str, np.ndarray], fetch: list[str] | None = None) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def run(self, clips: np.ndarray) -> np.ndarray:
        """First output for a batch of clips ``[N, num_seg, 3, S, S]``."""
        return self.run_feeds({self.input_names[0]: clips})[self.output_names[0]]

    def run_batched(self, clips: np.ndarray, batch_size: int) -> np.ndarray:
        """Like :meth:`run` for any N, in chunks of ``batch_size``."""
        return np.concatenate([self.run(clips[i : i + batch_size]) for i in range(0, len(clips), batch_size)])
