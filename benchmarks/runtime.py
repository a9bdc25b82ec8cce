"""``vslim-bench runtime``: models x backends x batch sizes x threads, inference only.

Every cell runs the same input (real clips of the agreement list when given, else
seeded noise), checks the output against Paddle Inference with oneDNN (a fast
wrong backend is not a result), warms up, then
times a fixed number of calls (or a minimum time). Rows that cannot run say why.
Ratios are taken inside one run: each INT8 model against the FP32 model it was
quantized from, and each row against ONNX Runtime on the FP32 model.
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from vslim.config import ListConfig, PredictorConfig
from vslim.data.lists import read_list
from vslim.data.pipeline import ClipPipeline
from vslim.evaluate import collect_outputs, summarize
from vslim.inference import Predictor, inspect_model
from vslim.inference.predictor import ModelInfo
from vslim.progress import progress_bar
from vslim.timing import timed_loop

from .backends import PEER, BackendUnavailable, make_runner, variants
from .environment import environment
from .stats import latency_stats


@dataclass
class RuntimeBench:
    models: dict[str, str]  # label -> inference model folder
    backends: list[str] = field(default_factory=lambda: ["paddle-cpu", "paddle-onednn", "onnxruntime",
                                                         "paddle-gpu", "paddle-trt"])
    batch_sizes: list[int] = field(default_factory=lambda: [1])
    threads: list[int] = field(default_factory=lambda: [2])
    warmup: int = 3
    iterations: int = 20
    min_seconds: float = 0.0
    max_seconds: float = 120.0
    agreement_list: Optional[str] = None
    seed: int = 0


def _pairs(infos: dict[str, ModelInfo]) -> dict[str, str]:
    """INT8 label -> the FP32 label it was quantized from (by ``vslim.json`` source), else the first FP32."""
    fp32 = {label: i for label, i in infos.items() if not i.quantized}
    pairs = {}
    for label, info in infos.items():
        if not info.quantized or not fp32:
            continue
        source = Path(info.meta.source).resolve() if info.meta.source else None
        match = next((l for l, f in fp32.items() if source and f.model_dir.resolve() == source), None)
        pairs[label] = match or next(iter(fp32))
    return pairs


def _agreement(infos, pairs, list_path: str, threads: int) -> dict:
    results = {}
    for int8_label, fp32_label in pairs.items():
        int8, fp32 = infos[int8_label], infos[fp32_label]
        if int8.inputs[0].shape != fp32.inputs[0].shape:
            continue
        entries = read_list(ListConfig(list_path))
        runners = {"fp32": Predictor(fp32.model_dir, PredictorConfig(threads=threads), fp32).run,
                   "int8": Predictor(int8.model_dir, PredictorConfig(threads=threads), int8).run}
        outs, labels = collect_outputs(runners, entries, ClipPipeline(fp32.meta.preprocess), 8,
                                       f"agreement {int8_label}")
        s_fp32, s_int8 = summarize(outs["fp32"], labels), summarize(outs["int8"], labels, outs["fp32"])
        results[int8_label] = {"fp32": fp32_label, "clips": len(labels), "fp32_top1": s_fp32.top1,
                               "int8_top1": s_int8.top1, "top1_agreement": s_int8.agreement, "list": list_path}
    return results


def _inputs(info: ModelInfo, cfg: RuntimeBench) -> dict[int, np.ndarray]:
    """One input per batch size: real clips from ``agreement_list`` when given, else seeded noise.

    Real clips make the cross-runtime check meaningful for INT8: on noise, activations leave the
    calibrated ranges and each runtime saturates them its own way (measured: ONNX Runtime and
    oneDNN INT8 outputs 1.19 logit scales apart on noise for one small model trained in CI,
    where 0.05-0.2 is usual; on clips 0.06 for the demo's model).
    """
    shape = [d if d > 0 else 1 for d in info.inputs[0].shape[1:]]
    noise = np.random.default_rng(cfg.seed).standard_normal([max(cfg.batch_sizes), *shape]).astype(np.float32)
    if cfg.agreement_list:
        entries = read_list(ListConfig(cfg.agreement_list))[: len(noise)]
        pipeline = ClipPipeline(info.meta.preprocess)
        clips = np.stack([pipeline.load(e) for e in entries]) if entries else noise[:0]
        if clips.shape[1:] == noise.shape[1:]:
            noise[: len(clips)] = clips
    return {b: np.ascontiguousarray(noise[:b]) for b in cfg.batch_sizes}


def run_runtime(cfg: RuntimeBench, say: Callable[[str], None] = print) -> dict:
    infos = {label: inspect_model(path) for label, path in cfg.models.items()}
    max_batch = max(cfg.batch_sizes)
    rows = []
    cells = sum(len(variants(b, i)) for b in cfg.backends for i in infos.values()) * len(cfg.threads)
    with tempfile.TemporaryDirectory(prefix="vslim-bench-onnx-") as onnx_cache, \
            progress_bar(total=cells * len(cfg.batch_sizes), desc="runtime", unit="cell") as bar:
        for label, info in infos.items():
            inputs = _inputs(info, cfg)
            reference = Predictor(info.model_dir, PredictorConfig(threads=max(cfg.threads)), info)
            expected = {b: reference.run(x) for b, x in inputs.items()}
            del reference
            for backend in cfg.backends:
                for run in variants(backend, info):
                    for threads in cfg.threads:
                        base = {"model": label, "precision": info.precision, "backend": run.backend,
                                "variant": run.variant, "threads": threads}
                        try:
                            runner = make_runner(run, info, threads, max_batch, Path(onnx_cache))
                        except BackendUnavailable as exc:
                            rows += [{**base, "batch": b, "status": "skipped", "reason": str(exc)}
                                     for b in cfg.batch_sizes]
                            bar.update(len(cfg.batch_sizes))
                            say(f"  {label} {run.label}: skipped — {exc}")
                            continue
                        for batch, x in inputs.items():
                            rows.append({**base, "batch": batch, **_measure(runner, x, expected[batch], cfg)})
                            bar.update(1)
                        del runner
    pairs = _pairs(infos)
    _add_ratios(rows, pairs)
    report = {"kind": "runtime", "environment": environment(), "config": cfg.__dict__,
              "models": {l: {"path": str(i.model_dir), "precision": i.precision, "arch": i.meta.arch,
                             "input_shape": list(i.inputs[0].shape)} for l, i in infos.items()},
              "pairs": pairs, "rows": rows}
    if cfg.agreement_list and pairs:
        report["agreement"] = _agreement(infos, pairs, cfg.agreement_list, max(cfg.threads))
    return report


def _measure(runner, x: np.ndarray, expected: np.ndarray, cfg: RuntimeBench) -> dict:
    try:
        out = runner(x)
    except Exception as exc:  # a backend failing at run time is a row, not a crash of the sweep
        return {"status": "failed", "reason": f"{type(exc).__name__}: {exc}"[:300]}
    scale = float(np.abs(expected).max()) or 1.0
    check = {"max_rel_diff_vs_paddle_onednn": float(np.abs(np.asarray(out) - expected).max()) / scale,
             "top1_agreement_vs_paddle_onednn": float(np.mean(np.argmax(out, -1) == np.argmax(expected, -1)))}
    times = timed_loop(lambda: runner(x), cfg.warmup, cfg.iterations, cfg.min_seconds, cfg.max_seconds)
    return {"status": "ok", **latency_stats(times, len(x)), **check}


def _add_ratios(rows: list[dict], pairs: dict[str, str]) -> None:
    ok = {(r["model"], r["backend"], r["variant"], r["batch"], r["threads"]): r for r in rows if r["status"] == "ok"}
    peer = {(r["model"], r["batch"], r["threads"]): r for r in rows
            if r["status"] == "ok" and r["backend"] == PEER and r["precision"] == "fp32"}
    for r in rows:
        if r["status"] != "ok":
            continue
        fp32_label = pairs.get(r["model"])
        if fp32_label:
            variant = "fp32" if r["backend"] == "paddle-trt" else r["variant"]
            base = ok.get((fp32_label, r["backend"], variant, r["batch"], r["threads"]))
            if base:
                r["int8_vs_fp32_latency"] = r["p50_ms"] / base["p50_ms"]
        peer_model = fp32_label or r["model"]
        ort = peer.get((peer_model, r["batch"], r["threads"]))
        if ort and r is not ort:
            r["speedup_vs_onnxruntime_fp32"] = ort["p50_ms"] / r["p50_ms"]
