"""Inference workers with dynamic batching.

Each worker thread owns a predictor clone (Paddle Inference predictors are not
thread-safe; clones share the weights). Requests wait in one queue. A worker takes
the oldest request, then, for up to ``batch_timeout_ms`` after that request
arrived, adds queued requests with the same input shapes and outputs until the
batch holds ``max_batch_size`` items; it runs the concatenated batch once and
answers each request with its own slice. ``max_batch_size=1`` turns batching off.
Requests of every protocol share the queue: a Paddle Serving request and a v2
request for the same shapes may run in one batch (each job carries its
protocol's tag, reported per batch for metrics).
The wait applies only under load (the previous batch merged requests, or more are
queued): a lone request is never held back for company that is not coming
(measured: +2 ms on a 6 ms request at concurrency 1 otherwise).

oneDNN builds (and, for INT8, reorders weights for) its kernels on the first run
of every input shape, per thread: a PP-TSM R50 INT8 batch of 4 took 1.1 s instead
of 0.6 s the first time. So each worker first runs every batch size it may see
(``warmup_batches``), and the engine reports ready only after that.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np

from vslim.errors import VslimError
from vslim.inference import Predictor

from .errors import UNAVAILABLE, RequestError


@dataclass
class _Job:
    feeds: dict[str, np.ndarray]
    fetch: tuple[str, ...]
    size: int
    key: tuple
    tag: str = ""
    future: Future = field(default_factory=Future)
    enqueued: float = field(default_factory=time.perf_counter)


@dataclass
class BatchStats:
    """What one batch run looked like (for metrics)."""

    size: int
    requests: int
    queue_seconds: float  # the longest wait of its requests
    run_seconds: float
    tags: tuple[str, ...] = ()  # the protocol of each request
    waits: tuple[float, ...] = ()  # each request's wait for a worker
    input_seconds: float = 0.0  # merging the requests' tensors into the batch
    output_seconds: float = 0.0  # slicing the batch's outputs back into answers


class InferenceEngine:
    def __init__(
        self,
        predictor: Predictor,
        workers: int = 1,
        max_batch_size: int = 1,
        batch_timeout_ms: float = 0.0,
        on_batch: Callable[[BatchStats], None] | None = None,
        warmup_batches: Sequence[int] = (),
        fail_every: int = 0,
        delay: float = 0.0,
    ):
        """``fail_every`` > 0 makes every n-th inference run raise, ``delay`` seconds precede every run (fault
        injection for resilience and drain tests)."""
        if workers < 1 or max_batch_size < 1 or batch_timeout_ms < 0:
            raise VslimError("workers and max_batch_size must be >= 1 and batch_timeout_ms >= 0")
        self.predictor = predictor
        self.max_batch_size = max_batch_size
        self.batch_timeout = batch_timeout_ms / 1000.0
        self.on_batch = on_batch
        # Only outputs with a batch dimension can be split back per request.
        self._splittable = all(s.shape and s.shape[0] == -1 for s in predictor.info.outputs)
        self._queue: deque[_Job] = deque()
        self._cond = threading.Condition()
        self._closing = False
        self._under_load = False
        self._fail_every = fail_every
        self._delay = delay
        self._runs = 0
        self.failed_in_a_row = 0  # inference runs that raised since the last one that answered
        self.last_success = time.monotonic()
        self.last_error: BaseException | None = None
        self._threads = []
        self._warm = threading.Barrier(workers + 1)
        self._warmup_batches = list(warmup_batches)
        predictors = [predictor] + [predictor.clone() for _ in range(workers - 1)]
        for i, pred in enumerate(predictors):
            t = threading.Thread(target=self._work, args=(pred,), name=f"vslim-infer-{i}", daemon=True)
            t.start()
            self._threads.append(t)

    def wait_warm(self, timeout: float | None = None) -> None:
        """Block until every worker has run its warm-up batches."""
        self._warm.wait(timeout)

    # ------------------------------------------------------------------ client side
    @property
    def queue_depth(self) -> int:
        return len(self._queue)

    def submit(self, feeds: dict[str, np.ndarray], fetch: list[str], tag: str = "") -> Future:
        """Queue one request; the future resolves to ``{fetch name: array}``. ``tag``: who sent it."""
        size = int(next(iter(feeds.values())).shape[0])
        key = (tuple((n, a.shape[1:], a.dtype.str) for n, a in sorted(feeds.items())), tuple(fetch))
        job = _Job(feeds, tuple(fetch), size, key, tag)
        with self._cond:
            if self._closing:
                raise RequestError("the server is shutting down; retry on another replica", UNAVAILABLE)
            self._queue.append(job)
            self._cond.notify()
        return job.future

    def close(self, timeout: float | None = None) -> None:
        """Stop taking requests, finish every queued one, stop the workers."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        for t in self._threads:
            t.join(timeout)

    def problem(self) -> str | None:
        """Why this engine cannot answer (a worker died, recent runs all failed), or None.

        Read by health checks, which must not load or run anything new.
        """
        if not self._closing and not all(t.is_alive() for t in self._threads):
            return "an inference worker thread has died"
        if self.failed_in_a_row >= 3:
            return f"the last {self.failed_in_a_row} inference runs failed: {self.last_error}"
        return None

    # ------------------------------------------------------------------ worker side
    def _take_first(self) -> _Job | None:
        with self._cond:
            while not self._queue:
                if self._closing:
                    return None
                self._cond.wait()
            return self._queue.popleft()

    def _gather(self, first: _Job) -> list[_Job]:
        batch, size = [first], first.size
        if self.max_batch_size <= 1 or not self._splittable:
            return batch
        deadline = first.enqueued + self.batch_timeout
        with self._cond:
            wait = self._under_load or bool(self._queue)
            while size < self.max_batch_size:
                match = next(
                    (j for j in self._queue if j.key == first.key and size + j.size <= self.max_batch_size), None
                )
                if match is not None:
                    self._queue.remove(match)
                    batch.append(match)
                    size += match.size
                    continue
                remaining = deadline - time.perf_counter()
                if not wait or remaining <= 0 or self._closing:
                    break
                self._cond.wait(remaining)
            self._under_load = len(batch) > 1
        return batch

    def _warm_up(self, predictor: Predictor) -> None:
        spec = predictor.input_spec
        shape = [d if d > 0 else 1 for d in spec.shape[1:]]
        for batch in self._warmup_batches:
            try:
                predictor.run(np.zeros([batch, *shape], dtype=spec.dtype))
            except Exception:  # a warm-up failure is not fatal; the real request will report it
                break

    def _work(self, predictor: Predictor) -> None:
        self._warm_up(predictor)
        self._warm.wait()
        while True:
            first = self._take_first()
            if first is None:
                return
            batch = self._gather(first)
            batch = [j for j in batch if j.future.set_running_or_notify_cancel()]
            if batch:
                self._run(predictor, batch)

    def _run(self, predictor: Predictor, batch: list[_Job]) -> None:
        start = time.perf_counter()
        try:
            with self._cond:
                self._runs += 1
                run_number = self._runs
            if self._delay:
                time.sleep(self._delay)
            if self._fail_every and run_number % self._fail_every == 0:
                raise RuntimeError(f"injected fault in inference run {run_number} (VSLIM_INJECT_FAULTS)")
            if len(batch) == 1:
                feeds = batch[0].feeds
            else:
                feeds = {n: np.concatenate([j.feeds[n] for j in batch]) for n in batch[0].feeds}
            merged = time.perf_counter()
            outputs = predictor.run_feeds(feeds, list(batch[0].fetch))
        except Exception as exc:  # answer every request of the batch, keep the worker alive
            with self._cond:
                self.failed_in_a_row += 1
                self.last_error = exc
            for job in batch:
                job.future.set_exception(exc)
            return
        end = time.perf_counter()
        with self._cond:
            self.failed_in_a_row = 0
            self.last_success = time.monotonic()
        offset = 0
        for job in batch:
            job.future.set_result({n: a[offset : offset + job.size] for n, a in outputs.items()})
            offset += job.size
        if self.on_batch:
            waits = tuple(start - j.enqueued for j in batch)
            self.on_batch(
                BatchStats(
                    offset,
                    len(batch),
                    max(waits),
                    end - merged,
                    tuple(j.tag for j in batch),
                    waits,
                    merged - start,
                    time.perf_counter() - end,
                )
            )
