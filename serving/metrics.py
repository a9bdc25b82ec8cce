"""Prometheus metrics of one server (its own registry, so several servers can live in one process).

Request series carry a ``protocol`` label: ``grpc``, ``http`` (Paddle Serving),
``v2-grpc``, ``v2-http`` (Open Inference Protocol). ``vslim_batches_total``
counts inference runs by the protocols whose requests they merged
(``grpc+v2-http``: one run answered both), which shows that the protocols share
one engine and one batcher.
"""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

disable_created_metrics()  # the *_created series only clutter a scrape

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


class ServerMetrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self):
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("vslim_requests", "Requests answered, by protocol, endpoint and outcome",
                                ["protocol", "endpoint", "outcome"], registry=r)
        self.errors = Counter("vslim_request_errors", "Requests answered with an error, by kind",
                              ["protocol", "kind"], registry=r)
        self.latency = Histogram("vslim_request_latency_seconds", "Time from request received to answer",
                                 ["protocol"], buckets=LATENCY_BUCKETS, registry=r)
        self.batch_size = Histogram("vslim_batch_size", "Items per inference run (dynamic batching merges requests)",
                                    buckets=BATCH_BUCKETS, registry=r)
        self.batch_requests = Histogram("vslim_batch_requests", "Requests merged into one inference run",
                                        buckets=BATCH_BUCKETS, registry=r)
        self.queue_seconds = Histogram("vslim_queue_seconds", "Time requests waited for a worker",
                                       buckets=LATENCY_BUCKETS, registry=r)
        self.inference_seconds = Histogram("vslim_inference_seconds", "Time of one inference run",
                                           buckets=LATENCY_BUCKETS, registry=r)
        self.batches = Counter("vslim_batches", "Inference runs, by the protocols of the requests they merged",
                               ["protocols"], registry=r)
        self.queue_depth = Gauge("vslim_queue_depth", "Requests waiting for a worker", registry=r)
        self.ready = Gauge("vslim_ready", "1 once the model is loaded and the server takes requests", registry=r)

    def observe_batch(self, stats) -> None:
        self.batch_size.observe(stats.size)
        self.batch_requests.observe(stats.requests)
        self.queue_seconds.observe(stats.queue_seconds)
        self.inference_seconds.observe(stats.run_seconds)
        self.batches.labels("+".join(sorted(set(stats.tags))) or "unknown").inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
