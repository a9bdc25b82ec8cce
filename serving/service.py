"""The protocol-independent core of the server: validate, queue, infer, answer.

gRPC and HTTP handlers decode their bodies into a :class:`~.codec.WireRequest`
and call :meth:`ModelService.infer`; errors come back as
:class:`~vslim.errors.RequestError` whose ``kind`` each protocol maps to its own
status code, with ``err_no``/``err_msg`` set as Paddle Serving sets them.
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Optional

import numpy as np

from vslim.data.pipeline import ClipPipeline
from vslim.errors import InferenceError, RequestError, VslimError
from vslim.metrics import softmax, topk

from . import codec
from .bundle import ServingBundle
from .engine import InferenceEngine
from .metrics import ServerMetrics

GRPC_STATUS = {"invalid": "INVALID_ARGUMENT", "unsupported": "INVALID_ARGUMENT", "too_large": "RESOURCE_EXHAUSTED",
               "unavailable": "UNAVAILABLE", "internal": "INTERNAL"}
HTTP_STATUS = {"invalid": 400, "unsupported": 415, "too_large": 413, "unavailable": 503, "internal": 500}
ERR_NO = {"invalid": codec.ERR_INPUT_PARAMS, "unsupported": codec.ERR_INPUT_PARAMS,
          "too_large": codec.ERR_INPUT_PARAMS, "unavailable": codec.ERR_INTERNAL, "internal": codec.ERR_INFERENCE}


@dataclass
class Classification:
    ids: list[int]
    scores: list[float]
    labels: list[str]


class ModelService:
    """One served model: its signature, limits, engine (once loaded) and metrics."""

    def __init__(self, bundle: ServingBundle, metrics: ServerMetrics, limits: codec.Limits, max_body: int):
        self.bundle = bundle
        self.metrics = metrics
        self.limits = limits
        self.max_body = max_body
        self.signature = codec.Signature.from_config(bundle.config)
        self.pipeline = ClipPipeline(bundle.meta.preprocess)
        self.engine: Optional[InferenceEngine] = None
        self.draining = False

    @property
    def ready(self) -> bool:
        return self.engine is not None and not self.draining

    def _check_ready(self) -> InferenceEngine:
        if self.draining:
            raise RequestError("the server is shutting down", "unavailable")
        if self.engine is None:
            raise RequestError("the model is still loading; retry when /health says ready", "unavailable")
        return self.engine

    async def infer(self, wire: codec.WireRequest):
        """Answer a general-model request with a ``Response`` message."""
        feeds, fetch = codec.validate(wire, self.signature, self.limits)
        outputs = await self._run(feeds, fetch)
        return codec.response(outputs, self.signature, wire.log_id)

    async def _run(self, feeds: dict[str, np.ndarray], fetch: list[str]) -> dict[str, np.ndarray]:
        engine = self._check_ready()
        self.metrics.queue_depth.set(engine.queue_depth)
        future = engine.submit(feeds, fetch)
        try:
            return await asyncio.wrap_future(future)
        except InferenceError as exc:
            raise RequestError(f"inference failed: {exc}", "internal") from exc
        except VslimError:
            raise
        except Exception as exc:  # never let a worker's failure become a hang or a 500 without a message
            raise RequestError(f"inference failed: {type(exc).__name__}: {exc}", "internal") from exc
        finally:
            self.metrics.queue_depth.set(engine.queue_depth)

    async def classify_clip(self, clip: np.ndarray, top_k: int = 1) -> Classification:
        """Top-k classes of one preprocessed clip ``[T, 3, S, S]``."""
        spec = self.signature.feeds[0]
        outputs = await self._run({spec.name: clip[None].astype(spec.dtype)}, [self.signature.fetches[0].name])
        logits = next(iter(outputs.values()))[0]
        probs = softmax(logits) if self.bundle.meta.output_kind == "logits" else logits
        ids, scores = topk(probs, top_k)
        meta = self.bundle.meta
        return Classification([int(i) for i in ids], [float(s) for s in scores], [meta.label_name(int(i)) for i in ids])

    def record(self, protocol: str, endpoint: str, start: float, error: Optional[RequestError] = None) -> None:
        outcome = "ok" if error is None else error.kind
        self.metrics.requests.labels(protocol, endpoint, outcome).inc()
        if error is not None:
            self.metrics.errors.labels(protocol, error.kind).inc()
        self.metrics.latency.labels(protocol).observe(time.perf_counter() - start)
