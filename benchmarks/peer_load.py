"""One peer runtime under closed-loop load, in a process of its own: ``python -m vslim.benchmarks.peer_load``.

``vslim-bench throughput`` starts this once per peer and round, so only one backend is in memory at a time
and each process's peak RSS is its own. The peer is built the way a user of it would build it by hand from
the FP32 model, and driven the way its own documentation says for throughput:

- ``openvino``, ``openvino-nncf-int8``: ``PERFORMANCE_HINT: THROUGHPUT`` (OpenVINO picks the streams and
  threads; its default inference precision, so BF16 on CPUs that have it) and an ``AsyncInferQueue`` that
  keeps ``concurrency`` requests in flight, as ``benchmark_app`` does; NNCF's INT8 is calibrated on the
  given clips (and cached beside the ONNX conversion).
- ``onnxruntime``, ``onnxruntime-int8``: one session with ONNX Runtime's default intra-op threading, called
  by ``concurrency`` threads at once (``run`` releases the GIL); the INT8 is its ``quantize_static`` (U8S8 QDQ).

With ``--video`` it is the hand-built pipeline instead: each client thread decodes and transforms the file
PaddleVideo's way (``handbuilt.py``) and runs the peer on the tensor.

The last line on stdout is the JSON result: the layout the peer chose and, per concurrency level, clips/s
and latency percentiles over ``duration`` seconds after an untimed warm-up.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .environment import peak_rss_mib
from .stats import latency_stats

PEERS = ("openvino", "openvino-nncf-int8", "onnxruntime", "onnxruntime-int8")
_KEEP: list = []  # built runtimes, never torn down (main exits with os._exit)
PRECISION = {"openvino": "fp32", "openvino-nncf-int8": "int8", "onnxruntime": "fp32", "onnxruntime-int8": "int8"}


def _openvino(info, calib, cache: Path | None) -> tuple[Callable, dict, Callable]:
    import openvino as ov

    from vslim.inference.runtimes.openvino_cpu import make_nncf_int8

    from .backends import onnx_file

    onnx = onnx_file(info, cache)
    path = make_nncf_int8(onnx, *calib) if calib is not None else onnx
    core = ov.Core()
    model = core.read_model(str(path))
    model.reshape({model.inputs[0].get_any_name(): [1, *[d if d > 0 else 1 for d in info.inputs[0].shape[1:]]]})
    compiled = core.compile_model(model, "CPU", {"PERFORMANCE_HINT": "THROUGHPUT"})
    layout = {
        "streams": int(compiled.get_property("NUM_STREAMS")),
        "threads": int(compiled.get_property("INFERENCE_NUM_THREADS")),
        "optimal_requests": int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")),
        "inference_precision": compiled.get_property("INFERENCE_PRECISION_HINT").to_string(),
        "model": path.name,
    }

    def load(clip: np.ndarray, concurrency: int, seconds: float) -> tuple[list[float], float]:
        queue = ov.AsyncInferQueue(compiled, concurrency)
        # each request's [start, end]: start once start_async has a free request and returns (it blocks while
        # every request is busy, releasing the GIL), end in the callback; subtracted after wait_all
        times: list[list[float]] = []

        def done(_request, span: list[float]) -> None:
            span.append(time.perf_counter())

        queue.set_callback(done)
        start = time.perf_counter()
        while time.perf_counter() < start + seconds:
            span: list[float] = []
            queue.start_async({0: clip}, span)
            span.insert(0, time.perf_counter())
            times.append(span)
        queue.wait_all()
        wall = time.perf_counter() - start
        _KEEP.append(queue)  # never destroyed (see main)
        return [end - begin for begin, end in times], wall

    def caller() -> Callable[[np.ndarray], np.ndarray]:
        request = compiled.create_infer_request()  # one per client thread; infer() releases the GIL
        return lambda x: np.array(request.infer({0: x})[0])

    return load, layout, caller


def _onnxruntime(info, calib, cache: Path | None) -> tuple[Callable, dict, Callable]:
    import onnxruntime as ort

    from .backends import onnx_file, ort_int8_file

    path = ort_int8_file(info, cache, calib[0]) if calib is not None else onnx_file(info, cache)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    layout = {"threads": "default (one per physical core)", "sessions": 1, "model": path.name}

    def load(clip: np.ndarray, concurrency: int, seconds: float) -> tuple[list[float], float]:
        latencies: list[float] = []
        start = time.perf_counter()
        deadline = start + seconds

        def caller():
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                session.run(None, {name: clip})
                latencies.append(time.perf_counter() - started)  # list.append is atomic under the GIL

        threads = [threading.Thread(target=caller) for _ in range(concurrency)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return latencies, time.perf_counter() - start

    def caller() -> Callable[[np.ndarray], np.ndarray]:
        return lambda x: session.run(None, {name: x})[0]

    return load, layout, caller


def _video_load(video: str, pipeline, caller: Callable) -> Callable:
    """The hand-built pipeline under load: each client thread preprocesses the file PaddleVideo's way, then
    runs the peer on the tensor (a request's latency covers both)."""
    from .handbuilt import paddlevideo_clip

    def load(_clip: np.ndarray, concurrency: int, seconds: float) -> tuple[list[float], float]:
        latencies: list[float] = []
        start = time.perf_counter()
        calls = [caller() for _ in range(concurrency)]

        def client(call: Callable) -> None:
            while time.perf_counter() < start + seconds:
                started = time.perf_counter()
                call(paddlevideo_clip(video, pipeline))
                latencies.append(time.perf_counter() - started)

        threads = [threading.Thread(target=client, args=(c,)) for c in calls]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return latencies, time.perf_counter() - start

    return load


def run_peer(
    peer: str,
    model_dir: str,
    levels: list[int],
    seconds: float,
    calib_list: str | None = None,
    cache: Path | None = None,
    video: str | None = None,
) -> dict:
    """Build ``peer`` from the FP32 model in ``model_dir`` and load it at each concurrency level: with the
    seeded tensor, or with ``video`` preprocessed PaddleVideo's way in each client thread (the hand-built
    pipeline; its answer on the video is in the result, to hold against vslim's)."""
    from vslim.errors import ConfigError
    from vslim.inference.model_info import inspect_model, seeded_feeds

    if peer not in PEERS:
        raise ConfigError(f"unknown peer {peer!r}; known: {', '.join(PEERS)}")
    info = inspect_model(model_dir)
    if info.quantized:
        raise ConfigError(f"{model_dir} is already quantized: peers are built from the FP32 model a user starts from")
    calib = None
    if PRECISION[peer] == "int8":
        if not calib_list:
            raise ConfigError(f"{peer} calibrates its own INT8: give --calib-list")
        from vslim.inference.selection import clips_from_list

        calib = (clips_from_list(info, calib_list, 32, "--calib-list"), calib_list)
    started = time.perf_counter()
    load, layout, caller = (_openvino if peer.startswith("openvino") else _onnxruntime)(info, calib, cache)
    clip = seeded_feeds(info.inputs)[info.inputs[0].name]
    result: dict = {"peer": peer, "precision": PRECISION[peer], "layout": layout, "levels": []}
    if video is not None:
        from vslim.data.pipeline import ClipPipeline

        from .handbuilt import check_handbuilt, paddlevideo_clip

        pipeline = ClipPipeline.for_model(info.meta)
        check_handbuilt(pipeline)
        scores = caller()(paddlevideo_clip(video, pipeline))[0]
        result["answer"] = {"top1": int(np.argmax(scores)), "scores": [float(v) for v in scores]}
        load = _video_load(video, pipeline, caller)
    for level in levels:
        load(clip, level, min(seconds, 2.0) if level == levels[0] else 0.5)  # untimed: first runs, thread start
        latencies, wall = load(clip, level, seconds)  # wall: until the last request in flight answered
        result["levels"].append(
            {"concurrency": level, **latency_stats(latencies), "clips_per_s": len(latencies) / wall}
        )
    result["build_s"] = time.perf_counter() - started
    result["peak_rss_mib"] = peak_rss_mib()["self"]
    _KEEP.append((load, caller))  # see main: the runtime outlives this call, until the process exits
    return result


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m vslim.benchmarks.peer_load", description=__doc__.splitlines()[0])
    p.add_argument("--peer", required=True, choices=PEERS)
    p.add_argument("--model", required=True, help="the FP32 inference model folder")
    p.add_argument("--concurrency", default="1,4,8")
    p.add_argument("--duration", type=float, default=15.0)
    p.add_argument("--calib-list")
    p.add_argument("--cache", help="conversion cache folder (default: vslim's user cache)")
    p.add_argument("--video", help="load with this file, preprocessed PaddleVideo's way per request, not a tensor")
    args = p.parse_args(argv)
    levels = [int(v) for v in args.concurrency.split(",")]
    result = run_peer(
        args.peer,
        args.model,
        levels,
        args.duration,
        args.calib_list,
        Path(args.cache) if args.cache else None,
        args.video,
    )
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    # Exit without tearing the runtimes down: an OpenVINO compiled model destroyed while an AsyncInferQueue's
    # executor thread waits for the GIL (to drop its Python callback) deadlocks, seen with 2026.4.
    os._exit(0)


if __name__ == "__main__":
    main()
