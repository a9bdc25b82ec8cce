"""What a served model takes and gives, and the one check every protocol's tensors go through.

Each protocol decodes its wire format into :class:`TensorIn` values and calls
:func:`check_inputs` / :func:`check_outputs`, so Paddle Serving and v2 requests
are refused for the same reasons, each in its own words (``Wording``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from .errors import TOO_LARGE, RequestError


@dataclass(frozen=True)
class VarSpec:
    name: str
    alias: str
    dtype: np.dtype
    shape: tuple[int, ...]  # without the batch dimension; -1 marks a free dimension


@dataclass(frozen=True)
class Signature:
    """Inputs (feeds) and outputs (fetches) of a served model, as its bundle declares them."""

    feeds: tuple[VarSpec, ...]
    fetches: tuple[VarSpec, ...]

    @staticmethod
    def _find(specs, key: str) -> VarSpec | None:
        return next((s for s in specs if key in (s.alias, s.name)), None)

    def feed(self, key: str) -> VarSpec | None:
        return self._find(self.feeds, key)

    def fetch(self, key: str) -> VarSpec | None:
        return self._find(self.fetches, key)


@dataclass(frozen=True)
class Limits:
    max_batch: int = 64
    max_elements: int = 64 * 2**20


@dataclass
class TensorIn:
    """One decoded input tensor, before it is checked against the model."""

    key: str  # the name the client gave
    dtype: np.dtype | None  # None: a type this server never takes
    type_name: str  # the type as the protocol names it, for messages
    shape: list[int]
    values: np.ndarray  # flat
    alt_key: str = ""  # a second name (Paddle Serving sends name and alias)


@dataclass(frozen=True)
class Wording:
    """How a protocol names inputs, outputs and types in its error messages."""

    input: str
    output: str
    type_name: Callable[[np.dtype], str]


def check_inputs(tensors: Sequence[TensorIn], sig: Signature, limits: Limits, words: Wording) -> dict[str, np.ndarray]:
    """``{var name: batch-first array}``, or a RequestError naming the problem."""
    if not tensors:
        names = ", ".join(s.alias for s in sig.feeds)
        raise RequestError(f"empty request: it holds no tensors; send one per model {words.input} ({names})")
    feeds: dict[str, np.ndarray] = {}
    for t in tensors:
        spec = sig.feed(t.key) or (sig.feed(t.alt_key) if t.alt_key else None)
        if spec is None:
            known = ", ".join(s.alias for s in sig.feeds)
            raise RequestError(f"unknown {words.input} {t.key or t.alt_key!r}; the model takes {known}")
        if spec.name in feeds:
            raise RequestError(f"{words.input} {spec.alias!r} is given twice")
        feeds[spec.name] = _check_tensor(t, spec, limits, words)
    missing = [s.alias for s in sig.feeds if s.name not in feeds]
    if missing:
        raise RequestError(f"missing {words.input}(s) {missing}; the model takes {[s.alias for s in sig.feeds]}")
    batches = {a.shape[0] for a in feeds.values()}
    if len(batches) > 1:
        raise RequestError(f"{words.input}s disagree on the batch size: {sorted(batches)}")
    return feeds


def check_outputs(keys: Sequence[str], sig: Signature, words: Wording) -> list[str]:
    """Var names of the asked outputs (all of them when none is asked), without repeats."""
    names: list[str] = []
    for key in keys or [s.alias for s in sig.fetches]:
        spec = sig.fetch(key)
        if spec is None:
            raise RequestError(f"unknown {words.output} {key!r}; the model gives {[s.alias for s in sig.fetches]}")
        if spec.name not in names:
            names.append(spec.name)
    return names


def _check_tensor(t: TensorIn, spec: VarSpec, limits: Limits, words: Wording) -> np.ndarray:
    label = f"{words.input} {spec.alias!r}"
    if t.dtype != spec.dtype:
        raise RequestError(f"{label} must be {words.type_name(spec.dtype)}, got {t.type_name}")
    shape = t.shape
    want = [-1, *spec.shape]
    if not shape:
        raise RequestError(
            f"{label} has no shape; send its shape with the batch dimension first, e.g. {[1, *spec.shape]}"
        )
    if any(d <= 0 for d in shape):
        raise RequestError(f"{label} has a non-positive dimension in shape {shape}")
    if shape[0] > limits.max_batch:
        raise RequestError(f"{label} has batch {shape[0]}, over this server's limit of {limits.max_batch}", TOO_LARGE)
    count = math.prod(shape)
    if count > limits.max_elements:
        raise RequestError(
            f"{label} has {count} elements, over this server's limit of {limits.max_elements}", TOO_LARGE
        )
    if len(shape) != len(want) or any(w >= 0 and w != d for w, d in zip(want, shape)):
        raise RequestError(f"{label} has shape {shape} but the model expects {want} (-1: any batch size)")
    if t.values.size != count:
        raise RequestError(f"{label} has {t.values.size} values but shape {shape} needs {count}")
    return t.values.reshape(shape)
