"""Checking ``.nb`` files: x86 ones are run and compared with Paddle Inference; ARM ones are inspected.

An ARM ``.nb`` cannot run on this x86 host (no ARM Lite runtime can be had here),
so it is verified structurally and the report says so: its header parses, the
optimizer's model viewer loads it, and an INT8 model's graph holds INT8 kernels.

Before either, :func:`check_pair` makes sure the ``.nb`` was made from the model it
is checked against (an INT8 ``.nb`` checked against the FP32 model would otherwise
pass the structural check): the precision of its kernels must match the model's,
and the optimizer run again on the model must give the same graph, byte for byte
when the optimizer version and options are the same.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np

from vslim.accuracy import cosine_similarity, top1_agreement
from vslim.config import ListConfig, PredictorConfig
from vslim.data.lists import read_list
from vslim.data.loader import iter_batches
from vslim.data.pipeline import ClipPipeline
from vslim.inference import PaddlePredictor
from vslim.inference.model_info import ModelInfo

from .errors import LiteError
from .optimizer import nb_digest, nb_header, nb_kernels, optimize
from .toolchain import Toolchain

RUNNER = Path(__file__).with_name("runner.py")
RELATIVE_TOLERANCE = 1e-4


def verification_clips(info: ModelInfo, count: int, val: ListConfig | None = None) -> tuple[np.ndarray, str]:
    """Real clips from a list when given, else seeded random clips of the model's input shape."""
    if val is not None:
        entries = read_list(val)[:count]
        clips = np.concatenate([c for c, _ in iter_batches(entries, ClipPipeline.for_model(info.meta), 8)])
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
    return {
        "max_abs_diff": max_abs,
        "output_scale": scale,
        "relative_diff": max_abs / scale,
        "cosine_min": float(cosine_similarity(lite_out, reference).min()),
        "top1_agreement": top1_agreement(lite_out, reference),
        "passed": max_abs / scale <= RELATIVE_TOLERANCE and top1_agreement(lite_out, reference) == 1.0,
    }


def verify_x86(tc: Toolchain, nb: Path, info: ModelInfo, clips: np.ndarray, clips_source: str) -> dict:
    """Run the x86 ``.nb`` and the original model in Paddle Inference on the same clips; compare."""
    reference = PaddlePredictor(info.model_dir, PredictorConfig(precision="fp32"), info).run_batched(clips, 4)
    result = compare(run_nb(tc, nb, clips), reference)
    result.update(
        kind="numeric",
        ran=True,
        clips=len(clips),
        clips_source=clips_source,
        reference="Paddle Inference (CPU, FP32) on the original model",
        tolerance=f"max abs diff <= {RELATIVE_TOLERANCE} x output scale, top-1 agreement 100%",
    )
    return result


def _kernel_diff(ours: dict, fresh: dict, limit: int = 4) -> str:
    keys = sorted(set(ours) | set(fresh))
    diffs = [f"{k}: {ours.get(k, 0)} vs {fresh.get(k, 0)}" for k in keys if ours.get(k, 0) != fresh.get(k, 0)]
    return "; ".join(diffs[:limit]) + (f"; and {len(diffs) - limit} more" if len(diffs) > limit else "")


def packaging_options(nb: Path) -> dict | None:
    """The optimizer options vslim-package used for ``nb``, from the ``lite_report.json`` beside it (if any)."""
    try:
        report = json.loads((Path(nb).parent / "lite_report.json").read_text())
    except (OSError, ValueError):
        return None
    if not any(e.get("file") == Path(nb).name for e in (report.get("targets") or {}).values()):
        return None
    cfg = report.get("config") or {}
    return {"quant_type": cfg.get("quant_type"), "enable_fp16": bool(cfg.get("enable_fp16"))}


def _option_candidates(nb: Path, kernels: dict) -> list[dict]:
    """vslim-package's option sets that could have written ``nb``, most likely first.

    fp16 shows in the kernels; a weight-only quant type (``--quant-type``) leaves
    ``*_quant_scale`` variables in the topology but not which width, so both are tried.
    """
    fp16 = kernels["precision"] == "fp16"
    if kernels["precision"] != "int8" and b"_quant_scale" in Path(nb).read_bytes():
        return [{"quant_type": q, "enable_fp16": fp16} for q in ("int8", "int16")]
    return [{"quant_type": None, "enable_fp16": fp16}]


def _options_text(options: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in options.items() if v) or "default options"


def check_pair(tc: Toolchain, nb: Path, info: ModelInfo) -> dict:
    """Whether ``nb`` was made from the model ``info`` describes; a :class:`LiteError` when it was not.

    Compared: the precision of the ``.nb``'s kernels with the model's (quantize ops in
    its program), then the ``.nb`` with a fresh optimization of the model for the same
    targets, options (from ``lite_report.json`` beside it, else inferred) and
    temporal_shift rewrite as vslim-package: kernel counts, then bytes. The optimizer
    is deterministic (only stray bytes after its version string differ between runs),
    so with the same optimizer version differing bytes mean another model. The answer
    lists what was compared and how far a match was shown.
    """
    from vslim.inference.temporal_shift import find_temporal_shifts, rewrite_temporal_shift

    ours = nb_kernels(nb)
    evidence = f"{'quantize' if info.quantized else 'no quantize'} ops in {info.model_file.name}"
    if info.meta.precision != info.precision:
        evidence += f"; its vslim.json says {info.meta.precision}"
    if (ours["precision"] == "int8") != info.quantized:
        raise LiteError(
            f"{nb.name} and {info.model_dir} are not a pair: the .nb holds an {ours['precision'].upper()} program "
            f"({ours['int8_kernels']} of {ours['total_kernels']} kernels int8) but the model is "
            f"{info.precision.upper()} ({evidence}). Give the model folder {nb.name} was made from"
        )
    compared = [
        f"precision: .nb {ours['precision']} ({ours['int8_kernels']} int8 kernels), model {info.precision} — match"
    ]
    spec = ",".join(ours["targets"]) or "arm"
    recorded = packaging_options(nb)
    candidates = [recorded] if recorded is not None else _option_candidates(nb, ours)
    header = nb_header(nb)["optimizer_version"]
    digest, matched = nb_digest(nb), None
    with tempfile.TemporaryDirectory(prefix="vslim-lite-pair-") as tmp:
        model_file, params_file = info.model_file, info.params_file
        keeps_shift = any(k.startswith("temporal_shift/") for k in ours["kernels"])
        if not keeps_shift and any(s.needs_rewrite for s in find_temporal_shifts(model_file)):
            rewrite_temporal_shift(model_file, params_file, Path(tmp) / "rewritten")
            model_file = Path(tmp) / "rewritten" / "model.pdmodel"
            params_file = Path(tmp) / "rewritten" / "model.pdiparams"
        for i, options in enumerate(candidates):
            fresh_nb = optimize(tc, model_file, params_file, Path(tmp) / f"fresh{i}", spec, **options)
            fresh = nb_kernels(fresh_nb)
            if fresh["kernels"] != ours["kernels"]:
                raise LiteError(
                    f"{nb.name} was not made from {info.model_dir}: optimizing that model for {spec} gives a "
                    f"different graph ({fresh['total_kernels']} kernels vs the .nb's {ours['total_kernels']}; "
                    f"kernel counts, fresh vs .nb: {_kernel_diff(fresh['kernels'], ours['kernels'])}). "
                    "Give the model folder the .nb was made from"
                )
            if nb_digest(fresh_nb) == digest:
                matched = options
                break
    source = "recorded in lite_report.json beside it" if recorded is not None else "inferred from the .nb"
    tried = "; ".join(_options_text(o) for o in candidates)
    compared.append(f"program: {ours['total_kernels']} kernels, the same as a fresh optimization for {spec}")
    if matched is not None:
        compared.append(
            f"bytes: identical to the fresh optimization (weights included; options {_options_text(matched)}, {source})"
        )
        verdict = "identical"
    elif header == tc.version:
        raise LiteError(
            f"{nb.name} was not made from {info.model_dir}: same graph, but its bytes (weights, quantization "
            f"scales) differ from a fresh optimization of that model with the same optimizer {header} and options "
            f"{tried} ({source}) — another export or calibration of the same architecture? "
            "Give the model folder the .nb was made from"
        )
    else:
        compared.append(
            f"bytes: not compared: the .nb was written by optimizer {header}, this one is "
            f"{tc.version}, whose output differs; so the weights could not be confirmed as this model's"
        )
        verdict = "same graph"
    return {
        "match": verdict,
        "compared": compared,
        "nb_precision": ours["precision"],
        "model_precision": info.precision,
        "targets": ours["targets"],
        "options": matched,
        "options_source": source,
    }


def structural(header: dict, view: dict, kernels: dict, int8_model: bool) -> dict:
    ok = view.get("loaded", False) and (not int8_model or kernels.get("int8_kernels", 0) > 0)
    return {
        "kind": "structural",
        "ran": False,
        "passed": ok,
        "reason": "ARM .nb files cannot be executed on this x86 host; checked instead: the header "
        f"({header['optimizer_version']}), loading in the optimizer's model viewer "
        f"({sum(view['ops'].values())} ops)" + (f", {kernels['int8_kernels']} int8 kernels" if int8_model else ""),
    }


def describe(result: dict) -> str:
    return json.dumps({k: result[k] for k in ("max_abs_diff", "relative_diff", "cosine_min", "top1_agreement")})
