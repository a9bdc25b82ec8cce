"""Workers x threads: how a server splits its CPU threads between concurrent inferences, chosen by measurement.

One worker with every thread answers one request fastest; several workers with fewer threads each (Paddle:
predictor clones; OpenVINO: one stream per worker) keep the cores busier under load, because a single
inference never scales across all threads (PP-TSM R50, 2 cores with AMX, under load: OpenVINO BF16 2 x 1
12.9 clips/s vs 1 x 2 11.2, Paddle INT8 12.5 vs 9.5). Which wins depends on the model, the runtime and the
CPU, so ``vslim-package`` measures each split of its thread budget on the runtime it chose, with every
worker busy as under load, and records the fastest in ``runtime.json``; ``vslim-serve`` uses it unless
``--workers``/``--threads`` are given.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from pathlib import Path

from ..config import PredictorConfig
from .model_info import ModelInfo, seeded_feeds


def splits(budget: int) -> list[tuple[int, int]]:
    """(workers, threads) with workers x threads == budget, workers a power of two (1, 2, 4...)."""
    found, workers = [], 1
    while workers <= budget:
        if budget % workers == 0:
            found.append((workers, budget // workers))
        workers *= 2
    return found


def loaded_throughput(
    run: list[Callable[[], object]], seconds: float, min_runs: int = 2, max_runs: int = 100
) -> tuple[float, int]:
    """Clips/s with each of ``run`` (one per worker) called back to back on its own thread for ``seconds``
    (at least ``min_runs`` and at most ``max_runs`` times each): the engine's workers when every one is busy."""
    counts = [0] * len(run)
    start = time.perf_counter()
    deadline = start + seconds

    def loop(i: int) -> None:
        while counts[i] < min_runs or (counts[i] < max_runs and time.perf_counter() < deadline):
            run[i]()
            counts[i] += 1

    threads = [threading.Thread(target=loop, args=(i,)) for i in range(len(run))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts) / (time.perf_counter() - start), sum(counts)


def measure_layout(
    model_dir: Path | str,
    info: ModelInfo,
    cache: Path,
    runtime: str,
    precision: str,
    budget: int,
    seconds: float = 3.0,
    say: Callable[[str], None] = lambda _: None,
) -> dict:
    """Every split of ``budget`` threads on ``runtime``/``precision``, loaded; the fastest is ``workers``/``threads``."""
    from .runtimes import open_predictor

    feeds = seeded_feeds(info.inputs)
    table: list[dict] = []
    options = splits(budget)
    if len(options) == 1:  # one thread: nothing to choose
        return {
            "workers": 1,
            "threads": budget,
            "budget": budget,
            "runtime": runtime,
            "precision": precision,
            "seconds": 0,
            "table": table,
        }
    for workers, threads in options:
        config = PredictorConfig(runtime=runtime, precision=precision, threads=threads, streams=workers)
        predictor = open_predictor(model_dir, config, info, cache=cache, record_checks=False)
        predictors = [predictor] + [predictor.clone() for _ in range(workers - 1)]
        runs: list[Callable[[], object]] = [functools.partial(p.run_feeds, feeds) for p in predictors]
        loaded_throughput(runs, 0.0, min_runs=1)  # first runs build kernels per thread
        rate, calls = loaded_throughput(runs, seconds)
        table.append({"workers": workers, "threads": threads, "clips_per_s": rate, "calls": calls})
        say(f"  {workers} worker(s) x {threads} thread(s): {rate:.2f} clips/s under load")
        del predictors, predictor, runs
    best = max(table, key=lambda r: r["clips_per_s"])
    return {
        "workers": best["workers"],
        "threads": best["threads"],
        "budget": budget,
        "runtime": runtime,
        "precision": precision,
        "seconds": seconds,
        "table": table,
    }
