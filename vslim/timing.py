"""Timing a call the same way everywhere: warm-up first, then the median of repeated runs."""
from __future__ import annotations

import time
from typing import Callable

import numpy as np


def time_calls(fn: Callable[[], object], runs: int, warmup: int = 1) -> np.ndarray:
    """Seconds each of ``runs`` calls of ``fn`` took, after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    times = np.empty(runs)
    for i in range(runs):
        t0 = time.perf_counter()
        fn()
        times[i] = time.perf_counter() - t0
    return times


def median_ms(fn: Callable[[], object], runs: int, warmup: int = 1) -> float:
    return 1000 * float(np.median(time_calls(fn, runs, warmup)))
