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
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vslim.config import ListConfig, PredictorConfig
from vslim.data.lists import read_list
from vslim.data.pipeline import ClipPipeline
from vslim.errors import ConfigError
from vslim.evaluate import collect_outputs, summarize
from vslim.inference import PaddlePredictor, inspect_model
from vslim.inference.model_info import ModelInfo
from vslim.progress import progress_bar

from .backends import PEER, PEER_BUILT, VSLIM_DEPLOYS, BackendUnavailable, make_runner, variants
from .environment import environment
from .stats import latency_stats


@dataclass
class RuntimeBench:
    models: dict[str, str]  # label -> inference model folder
    backends: list[str] = field(
        default_factory=lambda: ["paddle-cpu", "paddle-onednn", "onnxruntime", "paddle-gpu", "paddle-trt"]
    )
    batch_sizes: list[int] = field(default_factory=lambda: [1])
    threads: list[int] = field(default_factory=lambda: [2])
    warmup: int = 3
    iterations: int = 20
    min_seconds: float = 0.0
    max_seconds: float = 120.0
    agreement_list: str | None = None
    seed: int = 0


def _pairs(infos: dict[str, ModelInfo]) -> dict[str, str]:
    """INT8 label -> the FP32 label it was quantized from (by ``vslim.json`` source), else the first FP32."""
    fp32 = {label: i for label, i in infos.items() if not i.quantized}
    pairs = {}
    for label, info in infos.items():
        if not info.quantized or not fp32:
            continue
        source = Path(info.meta.source).resolve() if info.meta.source else None
        match = next((lab for lab, f in fp32.items() if source and f.model_dir.resolve() == source), None)
        pairs[label] = match or next(iter(fp32))
    return pairs


def _agreement(infos, pairs, list_path: str, threads: int) -> dict:
    results = {}
    for int8_label, fp32_label in pairs.items():
        int8, fp32 = infos[int8_label], infos[fp32_label]
        if int8.inputs[0].shape != fp32.inputs[0].shape:
            continue
        entries = read_list(ListConfig(list_path))
        runners = {
            "fp32": PaddlePredictor(fp32.model_dir, PredictorConfig(threads=threads), fp32).run,
            "int8": PaddlePredictor(int8.model_dir, PredictorConfig(threads=threads), int8).run,
        }
        outs, labels = collect_outputs(
            runners, entries, ClipPipeline.for_model(fp32.meta), 8, f"agreement {int8_label}"
        )
        s_fp32, s_int8 = summarize(outs["fp32"], labels), summarize(outs["int8"], labels, outs["fp32"])
        results[int8_label] = {
            "fp32": fp32_label,
            "clips": len(labels),
            "fp32_top1": s_fp32.top1,
            "int8_top1": s_int8.top1,
            "top1_agreement": s_int8.agreement,
            "list": list_path,
        }
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
        pipeline = ClipPipeline.for_model(info.meta)
        clips = np.stack([pipeline.load(e) for e in entries]) if entries else noise[:0]
        if clips.shape[1:] == noise.shape[1:]:
            noise[: len(clips)] = clips
    return {b: np.ascontiguousarray(noise[:b]) for b in cfg.batch_sizes}


def _calibration(info: ModelInfo, cfg: RuntimeBench, count: int = 8) -> np.ndarray:
    """Clips for the peers' own INT8 calibration (NNCF, ONNX Runtime): the agreement list's, else seeded noise."""
    shape = [d if d > 0 else 1 for d in info.inputs[0].shape[1:]]
    clips = np.random.default_rng(cfg.seed + 1).standard_normal([count, *shape]).astype(np.float32)
    if cfg.agreement_list:
        entries = read_list(ListConfig(cfg.agreement_list))[:count]
        pipeline = ClipPipeline.for_model(info.meta)
        real = np.stack([pipeline.load(e) for e in entries]) if entries else clips[:0]
        if real.shape[1:] == clips.shape[1:]:
            clips[: len(real)] = real
    return clips


def run_runtime(cfg: RuntimeBench, say: Callable[[str], None] = print) -> dict:
    """Every backend configuration of a model is loaded first, then timed *interleaved*: one call of
    each in turn, round after round, so drift of a shared machine hits all of them alike."""
    infos = {label: inspect_model(path) for label, path in cfg.models.items()}
    for label, info in infos.items():
        if len(info.inputs) > 1:
            names = ", ".join(s.name for s in info.inputs)
            raise ConfigError(
                f"{label}={info.model_dir} takes {len(info.inputs)} inputs ({names}); the runtime matrix times "
                "single-input models (its peers' INT8 calibrations feed one tensor). What works for it: "
                "`vslim-bench e2e --model DIR` (decode, preprocessing and inference), `vslim-package --target "
                "serving` (measures every runtime on it and records the fastest) and `vslim-bench serving`"
            )
    max_batch = max(cfg.batch_sizes)
    rows = []
    cells = sum(len(variants(b, i)) for b in cfg.backends for i in infos.values()) * len(cfg.threads)
    with (
        tempfile.TemporaryDirectory(prefix="vslim-bench-onnx-") as onnx_cache,
        progress_bar(total=cells * len(cfg.batch_sizes), desc="runtime", unit="cell") as bar,
    ):
        for label, info in infos.items():
            inputs = _inputs(info, cfg)
            calib = _calibration(info, cfg)
            reference = PaddlePredictor(info.model_dir, PredictorConfig(threads=max(cfg.threads)), info)
            expected = {b: reference.run(x) for b, x in inputs.items()}
            del reference
            for threads in cfg.threads:
                runners = {}
                for backend in cfg.backends:
                    for run in variants(backend, info):
                        base = {
                            "model": label,
                            "precision": info.precision,
                            "backend": run.backend,
                            "variant": run.variant,
                            "threads": threads,
                        }
                        try:
                            runners[run] = (
                                base,
                                make_runner(run, info, threads, max_batch, Path(onnx_cache), calib=calib),
                            )
                        except BackendUnavailable as exc:
                            rows += [
                                {**base, "batch": b, "status": "skipped", "reason": str(exc)} for b in cfg.batch_sizes
                            ]
                            bar.update(len(cfg.batch_sizes))
                            say(f"  {label} {run.label}: skipped — {exc}")
                for batch, x in inputs.items():
                    rows += _measure_interleaved(runners, x, expected[batch], batch, cfg)
                    bar.update(len(runners))
                del runners
    pairs = _pairs(infos)
    _add_ratios(rows, pairs)
    report = {
        "kind": "runtime",
        "environment": environment(),
        "config": cfg.__dict__,
        "models": {
            lab: {
                "path": str(i.model_dir),
                "precision": i.precision,
                "arch": i.meta.arch,
                "input_shape": list(i.inputs[0].shape),
            }
            for lab, i in infos.items()
        },
        "pairs": pairs,
        "rows": rows,
        "interleaved": True,
    }
    report["vs_best_peer"] = _versus_peers(rows, pairs)
    if cfg.agreement_list and pairs:
        report["agreement"] = _agreement(infos, pairs, cfg.agreement_list, max(cfg.threads))
    return report


def _measure_interleaved(
    runners: dict, x: np.ndarray, expected: np.ndarray, batch: int, cfg: RuntimeBench
) -> list[dict]:
    """Check each runner's output, warm each up, then time them in turns; one row each."""
    scale = float(np.abs(expected).max()) or 1.0
    live, rows = {}, {}
    for run, (base, runner) in runners.items():
        try:
            out = np.asarray(runner(x))
            for _ in range(cfg.warmup):
                runner(x)
        except Exception as exc:  # a backend failing at run time is a row, not a crash of the sweep
            rows[run] = {**base, "batch": batch, "status": "failed", "reason": f"{type(exc).__name__}: {exc}"[:300]}
            continue
        rows[run] = {
            **base,
            "batch": batch,
            "max_rel_diff_vs_paddle_onednn": float(np.abs(out - expected).max()) / scale,
            "top1_agreement_vs_paddle_onednn": float(np.mean(np.argmax(out, -1) == np.argmax(expected, -1))),
        }
        live[run] = runner
    times: dict = {run: [] for run in live}
    deadline = time.perf_counter() + cfg.max_seconds
    done = 0
    while live and (done < cfg.iterations or min(sum(t) for t in times.values()) < cfg.min_seconds):
        for run, runner in live.items():
            t0 = time.perf_counter()
            runner(x)
            times[run].append(time.perf_counter() - t0)
        done += 1
        if time.perf_counter() > deadline:
            break
    for run in live:
        rows[run].update(status="ok", **latency_stats(times[run], len(x)))
    return list(rows.values())


def _versus_peers(rows: list[dict], pairs: dict[str, str]) -> list[dict]:
    """Per FP32 model, batch and threads: vslim's fastest configuration against the fastest peer-built one.

    vslim's configurations are what ``--runtime auto`` can pick (Paddle FP32/BF16/INT8, OpenVINO and
    ONNX Runtime on vslim's own models, and OpenVINO's NNCF INT8 that ``--calib-list`` adds); the
    peers' are built from the FP32 model by hand (``backends.PEER_BUILT``). Rows whose top-1 disagrees with Paddle on
    more than 1% of the clips are left out of both.
    """
    groups: dict = {}
    for r in rows:
        if (
            r["status"] != "ok"
            or r.get("top1_agreement_vs_paddle_onednn", 0) < 0.99
            or r["backend"] in ("paddle-cpu", "paddle-gpu", "paddle-trt")
        ):
            continue
        family = pairs.get(r["model"], r["model"])
        key = (r["backend"], r["variant"])
        # a peer is built from the FP32 model; the same backend running vslim's INT8 model is vslim's
        peer_built = key in PEER_BUILT and r["model"] not in pairs
        sides = ["peer"] if peer_built else []
        if not peer_built or key in VSLIM_DEPLOYS:
            sides.append("vslim")
        for side in sides:
            groups.setdefault((family, r["batch"], r["threads"]), {}).setdefault(side, []).append(r)
    out = []
    for (family, batch, threads), sides in sorted(groups.items()):
        if "peer" not in sides or "vslim" not in sides:
            continue
        mine = min(sides["vslim"], key=lambda r: r["p50_ms"])
        peer = min(sides["peer"], key=lambda r: r["p50_ms"])

        def name(r):
            return f"{r['model']} {r['backend']}" + (f" ({r['variant']})" if r["variant"] else "")

        out.append(
            {
                "model": family,
                "batch": batch,
                "threads": threads,
                "vslim": name(mine),
                "vslim_p50_ms": mine["p50_ms"],
                "best_peer": name(peer),
                "peer_p50_ms": peer["p50_ms"],
                "vslim_vs_peer_latency": mine["p50_ms"] / peer["p50_ms"],
            }
        )
    return out


def _add_ratios(rows: list[dict], pairs: dict[str, str]) -> None:
    ok = {(r["model"], r["backend"], r["variant"], r["batch"], r["threads"]): r for r in rows if r["status"] == "ok"}
    peer = {
        (r["model"], r["batch"], r["threads"]): r
        for r in rows
        if r["status"] == "ok" and r["backend"] == PEER and r["precision"] == "fp32"
    }
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
