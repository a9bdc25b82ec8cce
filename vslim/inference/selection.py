"""``--runtime auto``: measure every runtime and precision this host offers for a model, keep the fastest
that passes the accuracy check, and record the whole table.

The winner depends on the CPU (AMX, AVX-512 BF16, VNNI), so it is measured where
the bundle is packaged, not hard-coded; a bundle moved to another host keeps its
choice, and falls back to Paddle when the chosen runtime is not installed there.
The record is ``runtime.json`` in the bundle's server folder, beside the
conversions it needs (``converted/``), all covered by the bundle's manifest.
"""

from __future__ import annotations

import math
import platform
from collections.abc import Callable, Collection
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import runtime_registry
from ..accuracy import cosine_similarity
from ..config import PredictorConfig
from ..data.clip_store import ClipStore, run_bounded
from ..errors import ConfigError, VslimError
from ..progress import progress_bar
from ..timing import timed_loop
from .cpu import BF16_FLAGS, REPORTED_FLAGS, cpu_flags, cpu_model, has_bf16
from .layout import measure_layout
from .model_info import ModelInfo, large_clip, seeded_feeds
from .predictor import PaddlePredictor
from .probe import reference_in_child
from .recorded import CONVERTED, RECORD, recorded_choice, resolve
from .runtimes import likely_cause, open_predictor
from .runtimes.converted import MIN_RUNTIME_COSINE

__all__ = ["CONVERTED", "RECORD", "candidates", "measure", "recorded_choice", "resolve", "table_markdown"]


@dataclass
class Measured:
    runtime: str
    precision: str
    status: str  # ok, skipped (cannot run here) or refused (runs, but computes the model wrongly)
    p50_ms: float | None = None
    cosine_vs_paddle: float | None = None
    reason: str = ""
    calibration: str = ""  # INT8 only: paddleslim (the quantized model's own) or the runtime's own (nncf), made here
    top1_agreement_vs_fp32: float | None = None  # on real clips, when a list was given
    cosine_vs_fp32: float | None = None
    clips: int = 0


def candidates(info: ModelInfo, own_int8: Collection[str] = ()) -> list[tuple[str, str]]:
    """Every (runtime, precision) of the registry that could run this model: its own precision, BF16 for FP32
    models, and the own INT8 of the runtimes in ``own_int8`` (calibrated here from clips: OpenVINO's NNCF)."""
    rows = runtime_registry.rows()
    if info.quantized:
        return [(r.name, "int8") for r in rows if "int8" in r.precisions]
    own = [(r.name, p) for r in rows for p in ("fp32", "bf16") if p in r.precisions]
    return own + [(r.name, "int8") for r in rows if r.name in own_int8]


@dataclass
class Guard:
    """Real clips and the FP32 model's outputs on them: each candidate must pick the same classes
    (top-1 agreement >= 99%) and, in float precisions, point the same way (cosine >= 0.99)."""

    clips: ClipStore
    fp32_outputs: np.ndarray
    fp32_model: str

    def check(self, predictor, precision: str) -> tuple[str | None, dict]:
        out = run_bounded(predictor.run, self.clips, 8)
        agreement = float(np.mean(out.argmax(1) == self.fp32_outputs.argmax(1)))
        cosine = float(cosine_similarity(out, self.fp32_outputs).min())
        figures = {"top1_agreement_vs_fp32": agreement, "cosine_vs_fp32": cosine, "clips": len(self.clips)}
        if agreement < MIN_AGREEMENT:
            return (
                f"top-1 agreement with FP32 {agreement:.1%} < {MIN_AGREEMENT:.0%} on {len(self.clips)} clips"
                + likely_cause(predictor.runtime, precision)
            ), figures
        if precision != "int8" and cosine < 0.99:
            return f"cosine to FP32 {cosine:.4f} < 0.99 on {len(self.clips)} clips", figures
        return None, figures


MIN_AGREEMENT = 0.99


def clips_from_list(info: ModelInfo, list_path: str, limit: int, flag: str) -> ClipStore:
    """Up to ``limit`` clips of a list, held in a :class:`ClipStore` (on disk when large: 32 PP-TSN clips are
    4.8 GB)."""
    from ..config import ListConfig
    from ..data import ClipPipeline, read_list

    entries = read_list(ListConfig(list_path))[:limit]
    if not entries:
        raise ConfigError(f"{flag} {list_path} has no clips")
    pipeline = ClipPipeline.for_model(info.meta)
    store = ClipStore()
    for entry in entries:
        store.append(pipeline.load(entry)[None].astype(info.inputs[0].dtype))
    return store


def guard_from_list(info: ModelInfo, list_path: str, threads: int, limit: int = 32) -> Guard:
    """The guard's clips from a PaddleVideo list; the FP32 reference is the model, or the FP32 model an
    INT8 one was quantized from (``vslim.json`` ``source``)."""
    clips = clips_from_list(info, list_path, limit, "--val-list")
    fp32_dir = info.model_dir
    if info.quantized:
        if not info.meta.source or not Path(info.meta.source).is_dir():
            raise ConfigError(
                f"{info.model_dir} is INT8 and its FP32 source model ({info.meta.source}) is not here: "
                "the accuracy guard compares with FP32; package on the machine that quantized it, "
                "or leave out --val-list"
            )
        fp32_dir = Path(info.meta.source)
    fp32 = PaddlePredictor(fp32_dir, PredictorConfig(threads=threads, precision="fp32"))
    outputs = run_bounded(fp32.run, clips, 8)
    return Guard(clips, outputs, str(fp32_dir))


def _measure_one(
    model_dir: Path,
    info: ModelInfo,
    runtime: str,
    precision: str,
    threads: int,
    cache: Path,
    x: dict[str, np.ndarray],
    reference: dict,
    iterations: int,
    guard: Guard | None = None,
) -> Measured:
    if precision == "bf16" and not has_bf16():
        return Measured(runtime, precision, "skipped", reason=f"no BF16 on this CPU ({' or '.join(BF16_FLAGS)})")
    try:
        predictor = open_predictor(
            model_dir,
            PredictorConfig(runtime=runtime, precision=precision, threads=threads),
            info,
            cache=cache,
            record_checks=True,
            reference=reference,
        )
    except ConfigError as exc:
        return Measured(runtime, precision, "skipped", reason=str(exc))
    except VslimError as exc:
        return Measured(runtime, precision, "refused", reason=str(exc))
    first = info.outputs[0].name
    cosine = float(cosine_similarity(predictor.run_feeds(x)[first], reference[first]).min())
    if cosine < MIN_RUNTIME_COSINE[precision]:
        return Measured(
            runtime,
            precision,
            "refused",
            cosine_vs_paddle=cosine,
            reason=f"cosine {cosine:.4f} to Paddle {info.precision} < {MIN_RUNTIME_COSINE[precision]}"
            + likely_cause(runtime, precision),
        )
    figures: dict[str, Any] = {}
    if guard is not None:
        problem, figures = guard.check(predictor, precision)
        if problem:
            return Measured(runtime, precision, "refused", cosine_vs_paddle=cosine, reason=problem, **figures)
    times = timed_loop(lambda: predictor.run_feeds(x), 2, iterations)
    return Measured(runtime, precision, "ok", p50_ms=1000 * float(np.median(times)), cosine_vs_paddle=cosine, **figures)


def calibrate_own_int8(
    info: ModelInfo, cache: Path, calib: tuple[ClipStore | np.ndarray, str], say: Callable[[str], None]
) -> dict[str, str]:
    """Each installed runtime's own INT8 of the FP32 model, calibrated on ``calib`` (clips, list): name -> how."""
    from .conversion import converted_onnx

    clips, source = calib
    made = {}
    for row in runtime_registry.rows():
        if not row.own_int8:
            continue
        if not row.available():
            say(f"  {row.name}'s own INT8 skipped: {row.name} is not installed ({row.install_hint()})")
            continue
        say(f"  calibrating {row.name}'s own INT8 ({row.own_int8_label}) on {len(clips)} clips of {source}")
        try:
            row.load_own_int8()(converted_onnx(info, cache), clips, source)
        except ImportError as exc:
            say(f"  {row.name}'s own INT8 skipped: {exc} ({row.install_hint()})")
            continue
        made[row.name] = f"{row.own_int8_label} ({len(clips)} clips of {source})"
    return made


def measure(
    model_dir: Path | str,
    info: ModelInfo,
    cache: Path,
    threads: int = 2,
    iterations: int = 10,
    say: Callable[[str], None] = lambda _: None,
    only: tuple[str, str] | None = None,
    guard: Guard | None = None,
    calib: tuple[ClipStore | np.ndarray, str] | None = None,
    layout: bool = True,
) -> dict:
    """The table and the choice, as written to ``runtime.json``; ``only``: one (runtime, precision) asked for;
    ``layout``: also the workers x threads split of ``threads`` fastest under load on the choice."""
    x = seeded_feeds(info.inputs)
    paddle = PaddlePredictor(model_dir, PredictorConfig(threads=threads), info)  # probes a model vslim has not seen
    probed = paddle.probed
    large = large_clip(info)
    # Paddle's allocator keeps a run's buffers for reuse: a 250-image clip's reference run left this process
    # at 4.8 GB under every runtime measured after it. So large clips get their reference from a child, and
    # the Paddle candidates are measured last.
    reference = reference_in_child(model_dir, info, probed, threads) if large else paddle.run_feeds(x)
    del paddle  # one model in memory at a time: each candidate below is loaded, measured and freed in turn
    own_int8 = calibrate_own_int8(info, cache, calib, say) if calib is not None and not info.quantized else {}
    rows = []
    options = [only] if only else candidates(info, own_int8)
    order = sorted(options, key=lambda o: o[0] == runtime_registry.REFERENCE) if large else options
    with progress_bar(total=len(options), desc="measuring runtimes", unit="runtime") as bar:
        for runtime, precision in order:
            rows.append(
                _measure_one(Path(model_dir), info, runtime, precision, threads, cache, x, reference, iterations, guard)
            )
            bar.update(1)
            row = rows[-1]
            say(
                f"  {runtime} {precision}: "
                + (f"{row.p50_ms:.1f} ms" if row.status == "ok" else f"{row.status} — {row.reason}")
            )
    rows.sort(key=lambda r: options.index((r.runtime, r.precision)))
    for r in rows:
        if r.precision == "int8":
            r.calibration = "paddleslim" if info.quantized else own_int8.get(r.runtime, "")
    ok = [r for r in rows if r.status == "ok"]
    if not ok:
        what = f"{only[0]} {only[1]} cannot" if only else "no runtime can"
        raise VslimError(
            f"{what} serve this model here: " + "; ".join(f"{r.runtime} {r.precision}: {r.reason}" for r in rows)
        )
    best = min(ok, key=lambda r: r.p50_ms if r.p50_ms is not None else math.inf)  # every ok row has its p50_ms
    flags = sorted(cpu_flags() & set(REPORTED_FLAGS))
    record = {
        "chosen": {"runtime": best.runtime, "precision": best.precision},
        "measured_on": {
            "cpu": cpu_model(),
            "flags": flags,
            "threads": threads,
            "batch": 1,
            "machine": platform.machine(),
        },
        "accuracy_guard": (
            {
                "clips": len(guard.clips),
                "fp32_model": guard.fp32_model,
                "min_top1_agreement": MIN_AGREEMENT,
                "min_cosine_float": 0.99,
            }
            if guard
            else {
                "clips": 0,
                "note": "seeded noise only: cosine to Paddle; give --val-list for "
                "top-1 agreement with FP32 on real clips",
            }
        ),
        "table": [asdict(r) for r in rows],
    }
    if probed is not None:  # what loads safely here, so a server never tries what crashed
        record["paddle_settings"] = probed
    if layout:
        say(f"  splitting {threads} threads between workers on {best.runtime} {best.precision}:")
        record["layout"] = measure_layout(model_dir, info, cache, best.runtime, best.precision, threads, say=say)
    return record


def table_markdown(record: dict) -> str:
    """The measured table for reports."""
    m = record["measured_on"]
    lines = [
        f"Measured on {m['cpu']} ({', '.join(m['flags'])}), {m['threads']} threads, batch {m['batch']}; "
        f"chosen: **{record['chosen']['runtime']} {record['chosen']['precision']}**",
        "",
        "| runtime | precision | p50 ms | cosine vs Paddle | top-1 agreement with FP32 | status |",
        "|---|---|---|---|---|---|",
    ]
    for r in record["table"]:
        p50 = f"{r['p50_ms']:.2f}" if r["p50_ms"] is not None else "-"
        cos = f"{r['cosine_vs_paddle']:.5f}" if r["cosine_vs_paddle"] is not None else "-"
        agree = (
            f"{r['top1_agreement_vs_fp32']:.1%} of {r['clips']}" if r.get("top1_agreement_vs_fp32") is not None else "-"
        )
        precision = r["precision"] + (f" ({r['calibration'].split(' ')[0]})" if r.get("calibration") else "")
        lines.append(
            f"| {r['runtime']} | {precision} | {p50} | {cos} | {agree} | {r['status']}"
            + (f": {r['reason'][:120]}" if r["reason"] else "")
            + " |"
        )
    return "\n".join(lines) + "\n"
