"""The protocol-independent core of the server: one model, its engine, limits, statistics.

Protocol front ends (``protocols/paddle_serving``, ``protocols/v2``) decode
their requests, check them against :attr:`ModelService.signature` and call
:meth:`ModelService.run` or :meth:`ModelService.classify`; every refusal is a
:class:`~.errors.RequestError` whose ``kind`` each front end maps to its own
status. Requests of every protocol meet in the same engine queue, so they are
batched together.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass

import numpy as np

from vslim.data.pipeline import ClipPipeline, as_inputs
from vslim.errors import InferenceError, VslimError
from vslim.topk import TopK

from .bundle import ServingBundle
from .engine import BatchStats, InferenceEngine
from .errors import INTERNAL, UNAVAILABLE, RequestError, unexpected
from .prometheus import ServerMetrics
from .signature import Limits
from .stats import ModelStats

TENSOR_MODEL, VIDEO_MODEL = "tensor", "video"


@dataclass(frozen=True)
class Batching:
    """How the engine batches and how many workers run (model configuration reports it)."""

    max_batch_size: int = 1
    timeout_ms: float = 0.0
    workers: int = 1
    device: str = "cpu"


_STILL_LOADING = "the model is still loading; retry when /health says ready"


class ModelService:
    """One served model: its signature, limits, engine (once loaded), metrics and statistics."""

    def __init__(
        self,
        bundle: ServingBundle,
        metrics: ServerMetrics,
        limits: Limits,
        max_body: int,
        batching: Batching = Batching(),
        name: str | None = None,
        version: str = "1",
    ):
        self.bundle = bundle
        self.name = name or bundle.name  # a repository names its models; a lone bundle is its folder's name
        self.version = version
        self.metrics = metrics.for_model(self.name)
        self.limits = limits
        self.max_body = max_body
        self.batching = batching
        self.signature = bundle.signature
        self.pipeline = ClipPipeline.for_model(bundle.meta)
        self.engine: InferenceEngine | None = None
        self.draining = False  # the server is shutting down
        self.unloading = False  # this model version is being unloaded
        self.active = 0  # requests admitted and not yet answered (an unload waits for them)
        # the tensor model counts every engine run; the video model its own requests and decoding
        self.stats = {TENSOR_MODEL: ModelStats(), VIDEO_MODEL: ModelStats()}

    @property
    def ready(self) -> bool:
        return self.engine is not None and not self.draining and not self.unloading

    @property
    def num_classes(self) -> int:
        shape = self.signature.fetches[0].shape
        return int(shape[-1]) if shape and shape[-1] > 0 else len(self.bundle.meta.labels)

    def check_ready(self) -> InferenceEngine:
        """The engine, or UNAVAILABLE while loading or draining (call before costly decoding)."""
        if self.draining:
            raise RequestError("the server is shutting down; retry on another replica", UNAVAILABLE)
        if self.unloading:
            raise RequestError(f"model '{self.name}' version {self.version} is being unloaded", UNAVAILABLE)
        if self.engine is None:
            raise RequestError(_STILL_LOADING, UNAVAILABLE)
        return self.engine

    @contextlib.contextmanager
    def admitted(self):
        """A request of this model from admission to answer: refused while loading or unloading, and counted,
        so that an unload finishes it before closing the engine."""
        self.check_ready()
        self.active += 1
        try:
            yield self
        finally:
            self.active -= 1

    async def run(self, feeds: dict[str, np.ndarray], fetch: list[str], tag: str) -> dict[str, np.ndarray]:
        """Queue checked feeds for the engine; ``{fetch var name: batch-first array}``.

        Admission (:meth:`admitted`) is the gate: a request admitted before an unload or a drain began is
        still decoding when the flag goes up and must be answered, so only a missing engine refuses here
        (the engine itself refuses once it is closing)."""
        engine = self.engine
        if engine is None:
            raise RequestError(_STILL_LOADING, UNAVAILABLE)
        self.metrics.queue_depth.set(engine.queue_depth)
        future = engine.submit(feeds, fetch, tag)
        try:
            return await asyncio.wrap_future(future)
        except InferenceError as exc:
            raise RequestError(f"inference failed: {exc}", INTERNAL) from exc
        except VslimError:
            raise
        except Exception as exc:  # never let a worker's failure become a hang or a 500 without a message
            raise RequestError(f"inference failed: {type(exc).__name__}: {exc}", INTERNAL) from exc
        finally:
            self.metrics.queue_depth.set(engine.queue_depth)

    async def classify(self, clips: list, top_k: int, tag: str) -> list[TopK]:
        """Top-k classes of preprocessed clips (``[T, 3, S, S]``, or one array per input of a two-input
        model), one engine request each (so they batch)."""
        specs, fetch = self.signature.feeds, self.signature.fetches[0]

        def feeds(clip) -> dict[str, np.ndarray]:
            return {s.name: x[None].astype(s.dtype, copy=False) for s, x in zip(specs, as_inputs(clip))}

        outputs = await asyncio.gather(*(self.run(feeds(clip), [fetch.name], tag) for clip in clips))
        meta = self.bundle.meta
        return [TopK.of(out[fetch.name][0], meta, top_k) for out in outputs]

    def observe_batch(self, stats: BatchStats) -> None:
        """The engine's report of one run (called from a worker thread)."""
        self.metrics.observe_batch(stats)
        self.stats[TENSOR_MODEL].execution(
            stats.size, (stats.input_seconds, stats.run_seconds, stats.output_seconds), stats.waits
        )

    def video_executed(self, clips: int, phases: tuple[float, float, float]) -> None:
        """One video request answered: decoding (input), classifying (infer), building the answer (output)."""
        self.stats[VIDEO_MODEL].execution(clips, phases, (0.0,))

    def record(
        self,
        protocol: str,
        endpoint: str,
        start: float,
        error: RequestError | None = None,
        model: str | None = TENSOR_MODEL,
    ) -> None:
        """One request answered: Prometheus series, and the statistics of ``model`` (None: no model was found)."""
        seconds = record_request(self.metrics, protocol, endpoint, start, error)
        if model is not None:
            self.stats[model].request(seconds, error is None)


def record_request(metrics, protocol: str, endpoint: str, start: float, error: RequestError | None = None) -> float:
    """A request's Prometheus series (``metrics``: one model's view); returns its seconds."""
    seconds = time.perf_counter() - start
    outcome = "ok" if error is None else error.kind
    metrics.requests.labels(protocol, endpoint, outcome).inc()
    if error is not None:
        metrics.errors.labels(protocol, error.kind).inc()
    metrics.latency.labels(protocol).observe(seconds)
    return seconds


class Call:
    """One request through a protocol handler, from arrival to its recorded outcome: the wrapper every handler
    uses instead of its own try/except/record.

    ``with Call(repo, protocol, endpoint, where) as call:`` times the request; inside, ``with
    call.admit(service, kind):`` admits it to a model version (refused while loading or unloading, counted
    while running). An exception leaving the block is recorded (a :class:`RequestError` as it is, anything
    else as INTERNAL naming ``where``, logged with its traceback) and kept in ``call.refusal`` for the
    handler to answer in its protocol's terms; a block that finishes is recorded as a success. Requests
    refused before any model was found count in the server's series only.
    """

    def __init__(self, repo, protocol: str, endpoint: str, where: str):
        self.repo, self.protocol, self.endpoint, self.where = repo, protocol, endpoint, where
        self.service: ModelService | None = None
        self.kind: str | None = TENSOR_MODEL
        self.refusal: RequestError | None = None
        self.start = time.perf_counter()

    def admit(self, service: ModelService, kind: str | None = TENSOR_MODEL):
        self.service, self.kind = service, kind
        return service.admitted()

    def __enter__(self) -> Call:
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc is not None and not isinstance(exc, Exception):
            return False  # cancellation, KeyboardInterrupt: not a refusal
        if exc is not None:
            self.refusal = exc if isinstance(exc, RequestError) else unexpected(exc, self.where)
        if self.service is None:
            self.repo.record(self.protocol, self.endpoint, self.start, self.refusal)
        else:
            self.service.record(self.protocol, self.endpoint, self.start, self.refusal, self.kind)
        return True
