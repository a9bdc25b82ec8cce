"""Cumulative per-model statistics in the shape of Triton's statistics extension.

Prometheus (``prometheus.py``) answers "how is the server doing"; these answer
Triton's ``/v2/models/{name}/stats`` and ``ModelStatistics`` so that Triton's
tools (perf_analyzer, model analyzer, tritonclient) read a vslim server as they
read Triton. Both are fed by the same events: a request answered, a batch run.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass


@dataclass
class Duration:
    count: int = 0
    ns: int = 0

    def add(self, seconds: float, count: int = 1) -> None:
        self.count += count
        self.ns += int(seconds * 1e9)

    def as_dict(self) -> dict:
        return {"count": self.count, "ns": self.ns}


_COMPUTE = ("compute_input", "compute_infer", "compute_output")
_PHASES = ("success", "fail", "queue", *_COMPUTE)


class ModelStats:
    """What one model has done since the server started (thread-safe: workers and the event loop both write)."""

    def __init__(self):
        self._lock = threading.Lock()
        self.phases = {name: Duration() for name in _PHASES}
        self.inference_count = 0  # items inferred: a request of batch 8 counts 8
        self.execution_count = 0  # model runs: a merged batch counts 1
        self.last_inference_ms = 0
        self.batches: dict[int, dict[str, Duration]] = {}  # per batch size: its three compute phases

    def request(self, seconds: float, ok: bool) -> None:
        """One request answered (``ok``) or refused, after ``seconds``."""
        with self._lock:
            self.phases["success" if ok else "fail"].add(seconds)
            if ok:
                self.last_inference_ms = int(time.time() * 1000)

    def spent(self, name: str, seconds: float) -> None:
        """Time a front end spent on a request's phase (decoding it, encoding the answer), not counted again:
        the execution that ran the request counted it once in every phase, and perf_analyzer checks that
        ``compute_input``, ``compute_infer`` and ``compute_output`` counts agree."""
        with self._lock:
            self.phases[name].add(seconds, 0)

    def execution(self, size: int, phases: tuple[float, float, float], waits) -> None:
        """One model run of ``size`` items; ``phases``: seconds of its input, infer and output steps;
        ``waits``: each merged request's time in the queue.

        As Triton counts them: every phase once per request (each request of a merged batch
        spent the whole run), ``batch_stats`` once per run in all three phases.
        """
        requests = len(waits)
        with self._lock:
            self.execution_count += 1
            self.inference_count += size
            for name, seconds in zip(_COMPUTE, phases):
                self.phases[name].add(seconds * requests, requests)
            for wait in waits:
                self.phases["queue"].add(wait)
            batch = self.batches.setdefault(size, {name: Duration() for name in _COMPUTE})
            for name, seconds in zip(_COMPUTE, phases):
                batch[name].add(seconds)

    def snapshot(self, name: str, version: str) -> dict:
        """Triton's ``ModelStatistics`` as JSON (counts and nanoseconds as numbers, version as a string)."""
        with self._lock:
            return {
                "name": name,
                "version": version,
                "last_inference": self.last_inference_ms,
                "inference_count": self.inference_count,
                "execution_count": self.execution_count,
                "inference_stats": {k: d.as_dict() for k, d in self.phases.items()},
                "batch_stats": [
                    {"batch_size": size, **{k: d.as_dict() for k, d in phases.items()}}
                    for size, phases in sorted(self.batches.items())
                ],
            }
