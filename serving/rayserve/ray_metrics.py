"""A replica's series, reported to Ray's metrics as well as to its own ``/metrics``.

Behind Ray's proxy, ``/metrics`` answers from whichever replica the request
reached, so it cannot show the application. Ray's metrics can: each node's
metrics agent exports every replica's series (``ray_``-prefixed, tagged with
``application``, ``deployment`` and ``replica``) on the node's metrics port, for
Prometheus to scrape and sum across replicas (KubeRay scrapes them with a
PodMonitor; ``ray metrics launch-prometheus`` does it on a plain cluster).
"""

from __future__ import annotations

from ray.serve import metrics as serve_metrics

from ..prometheus import MetricSpec, ServerMetrics


def _ray_metric(spec: MetricSpec):
    # ray.serve.metrics annotates tag_keys as Tuple[str] (a 1-tuple); it takes any tuple of names
    tags = ("model", *spec.labels)
    if spec.kind == "counter":
        return serve_metrics.Counter(spec.name, spec.doc, tag_keys=tags)  # type: ignore[arg-type]
    if spec.kind == "histogram":
        return serve_metrics.Histogram(
            spec.name,
            spec.doc,
            boundaries=list(spec.buckets),
            tag_keys=tags,  # type: ignore[arg-type]
        )
    return serve_metrics.Gauge(spec.name, spec.doc, tag_keys=tags)  # type: ignore[arg-type]


def replica_metrics() -> ServerMetrics:
    return ServerMetrics(mirror=_ray_metric)
