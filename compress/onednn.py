"""Choosing which ops run INT8 kernels on oneDNN, per model.

Measured (design.md §2 and here): enabling INT8 for every op type crashed on
small TSM models, gave wrong ``fc`` results on a random model, and on PP-TSM R50
costs fidelity (cosine to FP32 0.975 vs 0.992 for convolutions only). Convolutions
only (``fused_conv2d``: oneDNN's fusion renames ``conv2d`` before quantizing)
always worked. So the all-ops set is tried on real clips and kept only when it
runs, stays as close to the FP32 model as convolutions only, and is faster.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from vslim.config import PredictorConfig
from vslim.errors import VslimError
from vslim.inference import Predictor
from vslim.inference.predictor import SAFE_ONEDNN_INT8_OPS
from vslim.metrics import cosine_similarity
from vslim.timing import median_ms

ALL_OPS = ("*",)
FIDELITY_MARGIN = 0.002  # cosine the all-ops set may lose against convolutions only
SPEEDUP_NEEDED = 0.95  # all-ops must take at most this fraction of the convs-only time


def _predictor(model_dir, ops, threads) -> Predictor:
    return Predictor(model_dir, PredictorConfig(precision="int8", threads=threads, onednn_int8_ops=list(ops)))


def choose_onednn_int8_ops(model_dir: Path | str, sample: np.ndarray, fp32_out: np.ndarray,
                           threads: int = 2) -> list[str]:
    """The op set to pass to ``enable_mkldnn_int8`` for this INT8 model (``["*"]`` = all).

    ``fp32_out`` is the FP32 model's output on ``sample``: the target both op sets are held to.
    """
    safe = _predictor(model_dir, SAFE_ONEDNN_INT8_OPS, threads)
    safe_cos = cosine_similarity(safe.run(sample), fp32_out).min()
    try:
        candidate = _predictor(model_dir, ALL_OPS, threads)
        out = candidate.run(sample)
    except VslimError:
        return list(SAFE_ONEDNN_INT8_OPS)
    if not np.all(np.isfinite(out)) or cosine_similarity(out, fp32_out).min() < safe_cos - FIDELITY_MARGIN:
        return list(SAFE_ONEDNN_INT8_OPS)
    one = sample[:1]
    faster = median_ms(lambda: candidate.run(one), 3) < SPEEDUP_NEEDED * median_ms(lambda: safe.run(one), 3)
    return list(ALL_OPS if faster else SAFE_ONEDNN_INT8_OPS)
