"""Prometheus metrics of one server (its own registry, so several servers can live in one process).

Every series carries a ``model`` label (the repository's model name; empty for
requests refused before a model was known, e.g. without a token). Request series carry a ``protocol`` label: ``grpc``, ``http`` (Paddle Serving),
``v2-grpc``, ``v2-http`` (Open Inference Protocol). ``vslim_batches_total``
counts inference runs by the protocols whose requests they merged
(``grpc+v2-http``: one run answered both), which shows that the protocols share
one engine and one batcher.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

disable_created_metrics()  # the *_created series only clutter a scrape

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


@dataclass(frozen=True)
class MetricSpec:
    """One series family: both the server's own registry and a mirror (Ray's metrics) are built from it."""

    attr: str
    kind: str  # counter, histogram or gauge
    name: str
    doc: str
    labels: tuple[str, ...] = ()  # after ``model``, which every series has first
    buckets: tuple[float, ...] = ()


SPECS = (
    MetricSpec(
        "requests",
        "counter",
        "vslim_requests",
        "Requests answered, by protocol, endpoint and outcome",
        ("protocol", "endpoint", "outcome"),
    ),
    MetricSpec(
        "errors", "counter", "vslim_request_errors", "Requests answered with an error, by kind", ("protocol", "kind")
    ),
    MetricSpec(
        "latency",
        "histogram",
        "vslim_request_latency_seconds",
        "Time from request received to answer",
        ("protocol",),
        LATENCY_BUCKETS,
    ),
    MetricSpec(
        "batch_size",
        "histogram",
        "vslim_batch_size",
        "Items per inference run (dynamic batching merges requests)",
        (),
        BATCH_BUCKETS,
    ),
    MetricSpec(
        "batch_requests",
        "histogram",
        "vslim_batch_requests",
        "Requests merged into one inference run",
        (),
        BATCH_BUCKETS,
    ),
    MetricSpec(
        "queue_seconds", "histogram", "vslim_queue_seconds", "Time requests waited for a worker", (), LATENCY_BUCKETS
    ),
    MetricSpec(
        "inference_seconds", "histogram", "vslim_inference_seconds", "Time of one inference run", (), LATENCY_BUCKETS
    ),
    MetricSpec(
        "batches",
        "counter",
        "vslim_batches",
        "Inference runs, by the protocols of the requests they merged",
        ("protocols",),
    ),
    MetricSpec("queue_depth", "gauge", "vslim_queue_depth", "Requests waiting for a worker"),
    MetricSpec("ready", "gauge", "vslim_ready", "1 once the model is loaded and the server takes requests"),
)
_KINDS = {"counter": Counter, "histogram": Histogram, "gauge": Gauge}


def _own(spec: MetricSpec, registry: CollectorRegistry):
    extra = {"buckets": spec.buckets} if spec.kind == "histogram" else {}
    return _KINDS[spec.kind](spec.name, spec.doc, ["model", *spec.labels], registry=registry, **extra)


class _Mirrored:
    """A series that also reports every update to a mirror taking ``tags`` (Ray's metrics API)."""

    def __init__(self, own, mirror, labels: tuple[str, ...], values: tuple[str, ...] = ()):
        self._own, self._mirror, self._labels, self._values = own, mirror, labels, values

    def labels(self, *values) -> _Mirrored:
        return _Mirrored(self._own.labels(*values), self._mirror, self._labels, tuple(map(str, values)))

    def _tags(self) -> dict[str, str]:
        return dict(zip(self._labels, self._values))

    def inc(self, amount: float = 1) -> None:
        self._own.inc(amount)
        self._mirror.inc(amount, tags=self._tags())

    def observe(self, value: float) -> None:
        self._own.observe(value)
        self._mirror.observe(value, tags=self._tags())

    def set(self, value: float) -> None:
        self._own.set(value)
        self._mirror.set(value, tags=self._tags())


class _ForModel:
    """A series with its ``model`` label bound (every series' first label)."""

    def __init__(self, series, model: str):
        self._series, self._model = series, model

    def labels(self, *values):
        return self._series.labels(self._model, *values)

    def inc(self, amount: float = 1) -> None:
        self._series.labels(self._model).inc(amount)

    def observe(self, value: float) -> None:
        self._series.labels(self._model).observe(value)

    def set(self, value: float) -> None:
        self._series.labels(self._model).set(value)


class ModelMetrics:
    """One model's view of the server's series: the same attributes, the ``model`` label filled in."""

    # Set in __init__ from SPECS (one per spec's ``attr``); declared here for the type checker.
    requests: _ForModel
    errors: _ForModel
    latency: _ForModel
    batch_size: _ForModel
    batch_requests: _ForModel
    queue_seconds: _ForModel
    inference_seconds: _ForModel
    batches: _ForModel
    queue_depth: _ForModel
    ready: _ForModel

    def __init__(self, server: ServerMetrics, model: str):
        self.server = server
        for spec in SPECS:
            setattr(self, spec.attr, _ForModel(getattr(server, spec.attr), model))

    def observe_batch(self, stats) -> None:
        self.batch_size.observe(stats.size)
        self.batch_requests.observe(stats.requests)
        self.queue_seconds.observe(stats.queue_seconds)
        self.inference_seconds.observe(stats.run_seconds)
        self.batches.labels("+".join(sorted(set(stats.tags))) or "unknown").inc()


class ServerMetrics:
    """The server's series in its own registry (``/metrics``); ``mirror(spec)`` also reports them elsewhere."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, mirror: Callable[[MetricSpec], Any] | None = None):
        self.registry = CollectorRegistry()
        for spec in SPECS:
            own = _own(spec, self.registry)
            setattr(self, spec.attr, _Mirrored(own, mirror(spec), ("model", *spec.labels)) if mirror else own)

    def for_model(self, model: str) -> ModelMetrics:
        return ModelMetrics(self, model)

    def render(self) -> bytes:
        return generate_latest(self.registry)
