"""Timing a call the same way everywhere: untimed warm-up, then repeated timed calls."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np


def timed_loop(
    fn: Callable[[], object], warmup: int, iterations: int, min_seconds: float = 0.0, max_seconds: float = 600.0
) -> list[float]:
    """Seconds per call: ``warmup`` untimed calls, then at least ``iterations`` calls lasting ``min_seconds``.

    ``max_seconds`` bounds the timed phase, so one slow backend cannot stall a sweep.
    """
    for _ in range(warmup):
        fn()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < iterations or time.perf_counter() - start < min_seconds:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        if time.perf_counter() - start > max_seconds:
            break
    return times


def median_ms(fn: Callable[[], object], runs: int, warmup: int = 1) -> float:
    return 1000 * float(np.median(timed_loop(fn, warmup, runs)))
