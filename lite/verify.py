"""Checking ``.nb`` files: x86 ones are run and compared with Paddle Inference; ARM ones are inspected.

An ARM ``.nb`` cannot run on this x86 host (no ARM Lite runtime can be had here),
so it is verified structurally and the report says so: its header parses, the
optimizer's model viewer loads it, and an INT8 model's graph holds INT8 kernels.
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Optional

import numpy as np

from vslim.config import ListConfig, PredictorConfig
from vslim.data.lists import read_list
from vslim.data.loader import iter_batches
from vslim.data.pipeline import ClipPipeline
from .errors import LiteError
from vslim.inference import Predictor
from vslim.inference.predictor import ModelInfo
from vslim.accuracy import cosine_similarity, top1_agreement

from .toolchain import Toolchain

RUNNER = Path(__file__).with_name("runner.py")
RELATIVE_TOLERANCE = 1e-4


def verification_clips(info: ModelInfo, count: int, val: Optional[ListConfig] = None) -> tuple[np.ndarray, str]:
    """Real clips from a list when given, else seeded random clips of the model's input shape."""
    if val is not None:
        entries = read_list(val)[:count]
        clips = np.concatenate([c for c, _ in iter_batches(entries, ClipPipeline(info.meta.preprocess), 8)])
        return clips, f"{len(clips)} clips from {val.file_path}"
    shape = [d if d > 0 else 1 for d in info.inputs[0].shape[1:]]
    clips = np.random.default_rng(0).standard_normal([count, *shape]).astype(np.float32)
    return clips, f"{count} random clips (seed 0)"


def run_nb(tc: Toolchain, nb: Path, clips: np.ndarray) -> np.ndarray:
    """Outputs of ``nb`` in the Lite Python runtime, one clip at a time."""
    with tempfile.TemporaryDirectory(prefix="vslim-lite-run-") as tmp:
        inp, out = Path(tmp) / "in.npy", Path(tmp) / "out.npy"
        np.save(inp, np.ascontiguousarray(clips, dtype=np.float32))
        proc = tc.run_python([str(RUNNER), "--nb", str(nb), "--input", str(inp), "--output", str(out)])
        if proc.returncode != 0 or not out.is_file():
            tail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
            raise LiteError(f"Paddle Lite's runtime could not run {nb.name} (exit {proc.returncode}): {tail}")
        return np.load(out)


def compare(lite_out: np.ndarray, reference: np.ndarray) -> dict:
    scale = float(np.abs(reference).max()) or 1.0
    max_abs = float(np.abs(lite_out - reference).max())
    return {"max_abs_diff": max_abs, "output_scale": scale, "relative_diff": max_abs / scale,
            "cosine_min": float(cosine_similarity(lite_out, reference).min()),
            "top1_agreement": top1_agreement(lite_out, reference),
            "passed": max_abs / scale <= RELATIVE_TOLERANCE and top1_agreement(lite_out, reference) == 1.0}


def verify_x86(tc: Toolchain, nb: Path, info: ModelInfo, clips: np.ndarray, clips_source: str) -> dict:
    """Run the x86 ``.nb`` and the original model in Paddle Inference on the same clips; compare."""
    reference = Predictor(info.model_dir, PredictorConfig(precision="fp32"), info).run_batched(clips, 4)
    result = compare(run_nb(tc, nb, clips), reference)
    result.update(kind="numeric", ran=True, clips=len(clips), clips_source=clips_source,
                  reference="Paddle Inference (CPU, FP32) on the original model",
                  tolerance=f"max abs diff <= {RELATIVE_TOLERANCE} x output scale, top-1 agreement 100%")
    return result


def structural(header: dict, view: dict, kernels: dict, int8_model: bool) -> dict:
    ok = view.get("loaded", False) and (not int8_model or kernels.get("int8_kernels", 0) > 0)
    return {"kind": "structural", "ran": False, "passed": ok,
            "reason": "ARM .nb files cannot be executed on this x86 host; checked instead: the header "
                      f"({header['optimizer_version']}), loading in the optimizer's model viewer "
                      f"({sum(view['ops'].values())} ops)" + (
                          f", {kernels['int8_kernels']} int8 kernels" if int8_model else "")}


def describe(result: dict) -> str:
    return json.dumps({k: result[k] for k in ("max_abs_diff", "relative_diff", "cosine_min", "top1_agreement")})
