"""Choosing which ops run INT8 kernels on oneDNN, per model.

Measured (docs/architecture.md, Python stack, and here): enabling INT8 for every op type crashed on
small TSM models and gave wrong ``fc`` results on a random model, while
convolutions only (``fused_conv2d``: oneDNN's fusion renames ``conv2d`` before
quantizing) always worked. On PP-TSM R50 (temporal shifts rewritten), all op
types run 1.5x faster than convolutions only (163 vs 251 ms) at a slightly lower
cosine to FP32 (0.997 vs 0.999 on real clips). So the all-ops set is tried on
calibration clips and kept when it runs, stays close to the FP32 model (cosine
>= 0.99 and no more top-1 disagreements than convolutions only), and is faster.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vslim.accuracy import cosine_similarity, top1_agreement
from vslim.config import PredictorConfig
from vslim.errors import VslimError
from vslim.inference import PaddlePredictor
from vslim.inference.predictor import SAFE_ONEDNN_INT8_OPS
from vslim.timing import median_ms

ALL_OPS = ("*",)
MIN_COSINE = 0.99
SPEEDUP_NEEDED = 0.95  # all-ops must take at most this fraction of the convs-only time


def describe_op_set(ops) -> str:
    """How a recorded op set reads in a report: ``*`` is oneDNN's "every op type it has an INT8 kernel for"."""
    ops = list(ops or [])
    if ops == list(ALL_OPS):
        return "all ops oneDNN can quantize"
    if ops == list(SAFE_ONEDNN_INT8_OPS):
        return "fused_conv2d (convolutions only)"
    return ", ".join(ops) or "-"


def _predictor(model_dir, ops, threads) -> PaddlePredictor:
    return PaddlePredictor(model_dir, PredictorConfig(precision="int8", threads=threads, onednn_int8_ops=list(ops)))


def _fidelity(out: np.ndarray, fp32_out: np.ndarray) -> dict:
    return {
        "cosine_min": float(cosine_similarity(out, fp32_out).min()),
        "top1_agreement": top1_agreement(out, fp32_out),
    }


def choose_onednn_int8_ops(
    model_dir: Path | str, sample: np.ndarray, fp32_out: np.ndarray, threads: int = 2
) -> tuple[list[str], dict]:
    """The op set for ``enable_mkldnn_int8`` (``["*"]`` = all) and the figures it was chosen on.

    ``fp32_out`` is the FP32 model's output on ``sample``: the target both op sets are held to.
    """
    one = sample[:1]
    safe = _predictor(model_dir, SAFE_ONEDNN_INT8_OPS, threads)
    details = {"fused_conv2d": {**_fidelity(safe.run(sample), fp32_out), "ms": median_ms(lambda: safe.run(one), 3)}}
    try:
        candidate = _predictor(model_dir, ALL_OPS, threads)
        out = candidate.run(sample)
    except VslimError as exc:
        details["*"] = {"error": str(exc)[:300]}
        return list(SAFE_ONEDNN_INT8_OPS), details
    if not np.all(np.isfinite(out)):
        details["*"] = {"error": "non-finite outputs"}
        return list(SAFE_ONEDNN_INT8_OPS), details
    details["*"] = {**_fidelity(out, fp32_out), "ms": median_ms(lambda: candidate.run(one), 3)}
    good = (
        details["*"]["cosine_min"] >= MIN_COSINE
        and details["*"]["top1_agreement"] >= details["fused_conv2d"]["top1_agreement"]
    )
    faster = details["*"]["ms"] < SPEEDUP_NEEDED * details["fused_conv2d"]["ms"]
    return list(ALL_OPS if good and faster else SAFE_ONEDNN_INT8_OPS), details
