"""Choosing which ops run INT8 kernels on oneDNN, per model.

Measured (design.md §2): enabling INT8 for every op type crashed on small TSM
models and gave wrong ``fc`` results on a random model, while convolutions only
(``fused_conv2d``: oneDNN's fusion renames ``conv2d`` before quantizing) always
worked. So each candidate op set is tried on real clips and checked against the
quantized model simulated in FP32 (what the INT8 kernels must reproduce); the
fastest set that is right wins, and convolutions only is the fallback.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from vslim.config import PredictorConfig
from vslim.errors import VslimError
from vslim.inference import Predictor
from vslim.inference.predictor import SAFE_ONEDNN_INT8_OPS
from vslim.metrics import cosine_similarity

ALL_OPS = ("*",)
CANDIDATE_OP_SETS = (ALL_OPS, SAFE_ONEDNN_INT8_OPS)
MIN_COSINE = 0.99


def _median_ms(pred: Predictor, x: np.ndarray, runs: int = 5) -> float:
    pred.run(x)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        pred.run(x)
        times.append(time.perf_counter() - t0)
    return 1000 * float(np.median(times))


def choose_onednn_int8_ops(model_dir: Path | str, sample: np.ndarray, threads: int = 2) -> list[str]:
    """The op set to pass to ``enable_mkldnn_int8`` for this INT8 model (``["*"]`` = all)."""
    reference = Predictor(model_dir, PredictorConfig(precision="fp32", use_onednn=False, threads=threads)).run(sample)
    timings = {}
    for ops in CANDIDATE_OP_SETS:
        try:
            pred = Predictor(model_dir, PredictorConfig(precision="int8", threads=threads, onednn_int8_ops=list(ops)))
            out = pred.run(sample)
        except VslimError:
            continue
        if not np.all(np.isfinite(out)) or cosine_similarity(out, reference).min() < MIN_COSINE:
            continue
        timings[ops] = _median_ms(pred, sample[:1])
    if not timings:
        return list(SAFE_ONEDNN_INT8_OPS)
    return list(min(timings, key=timings.get))
