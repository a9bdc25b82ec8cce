"""Latency statistics the way every vslim benchmark reports them."""

from __future__ import annotations

import numpy as np


def latency_stats(seconds, batch: int = 1) -> dict:
    """p50/p90/p95/p99/mean/std in milliseconds, and clips per second, of per-call times."""
    ms = 1000 * np.asarray(seconds, dtype=np.float64)
    if ms.size == 0:
        return {"calls": 0}
    mean = float(ms.mean())
    return {
        "calls": int(ms.size),
        "batch": batch,
        "p50_ms": float(np.percentile(ms, 50)),
        "p90_ms": float(np.percentile(ms, 90)),
        "p95_ms": float(np.percentile(ms, 95)),
        "p99_ms": float(np.percentile(ms, 99)),
        "mean_ms": mean,
        "std_ms": float(ms.std()),
        "min_ms": float(ms.min()),
        "clips_per_s": 1000.0 * batch / mean,
    }
