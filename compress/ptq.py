"""Post-training quantization: FP32 inference model + calibration clips -> INT8 inference model.

PaddleSlim's ``quant_post_static`` does the calibration. Around it vslim adds
what a deployment needs: the calibration clips decoded once and shared by every
algorithm, an accuracy-driven ``auto`` mode (try several algorithms, keep the
best that stays within a tolerance, as Intel Neural Compressor users expect),
the oneDNN INT8 op set that is numerically right for this model, and a report
of FP32 vs INT8 accuracy, agreement, size and time.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vslim.config import PredictorConfig, to_dict
from vslim.data.clip_store import ClipStore, bounded_batch, run_bounded
from vslim.data.lists import read_list
from vslim.data.loader import iter_batches
from vslim.data.pipeline import ClipPipeline
from vslim.evaluate import EvalSummary, summarize
from vslim.fsio import atomic_output_dir, check_output_free, write_json, write_text_atomic
from vslim.inference import PaddlePredictor, inspect_model
from vslim.inference.model_info import ModelInfo
from vslim.progress import progress_bar
from vslim.timing import median_ms
from vslim.upstream import quiet_upstream

from .compression_report import int8_speed_note, ptq_markdown
from .config import PTQConfig
from .errors import QuantizationError
from .image_chunks import chunk_size, head_tensors, per_image_program, restore_image_count
from .onednn import choose_onednn_int8_ops

QUANT_MODEL = "model.pdmodel"
QUANT_PARAMS = "model.pdiparams"


@dataclass
class Candidate:
    """One calibrated INT8 model and how it compares with FP32."""

    algo: str
    model_dir: Path
    seconds: float
    size: dict
    onednn_int8_ops: list[str] = field(default_factory=list)
    op_set_choice: dict = field(default_factory=dict)
    calib: EvalSummary | None = None
    val: EvalSummary | None = None
    within_tolerance: bool | None = None
    images_per_calibration_batch: int | None = None  # a many-image clip calibrated in chunks (image_chunks.py)

    def to_dict(self) -> dict:
        return {
            "algo": self.algo,
            "seconds": round(self.seconds, 3),
            **self.size,
            "images_per_calibration_batch": self.images_per_calibration_batch,
            "onednn_int8_ops": self.onednn_int8_ops,
            "op_set_choice": self.op_set_choice,
            "calib": self.calib.to_dict() if self.calib else None,
            "val": self.val.to_dict() if self.val else None,
            "within_tolerance": self.within_tolerance,
        }


@dataclass
class PTQResult:
    output_dir: Path
    chosen: Candidate
    candidates: list[Candidate]
    fp32_val: EvalSummary | None
    fp32_size: dict
    report: dict


def model_size(info: ModelInfo) -> dict:
    """Bytes on disk: the weights, the program, and both (what a deployment ships)."""
    params, program = info.params_file.stat().st_size, info.model_file.stat().st_size
    return {"params_bytes": params, "program_bytes": program, "total_bytes": params + program}


def _latency_ms(predictor: PaddlePredictor, one: np.ndarray) -> float:
    """Median ms of one clip; the predictor is dropped by the caller right after."""
    return median_ms(lambda: predictor.run(one), 10, 2)


def load_labelled(entries, pipeline: ClipPipeline, batch_size: int) -> tuple[ClipStore, np.ndarray]:
    """Validation clips decoded once (every model then runs over the same arrays) and their labels."""
    store, labels = ClipStore(), []
    with progress_bar(total=len(entries), desc="validation clips", unit="clip") as bar:
        for clips, lab in iter_batches(entries, pipeline, batch_size):
            store.append(clips)
            labels.append(lab)
            bar.update(len(clips))
    return store, np.concatenate(labels)


def load_clips(entries, pipeline: ClipPipeline, batch_size: int, desc: str) -> ClipStore:
    """Decode clips once (calibration sets are tens of clips; large ones are kept on disk)."""
    store = ClipStore()
    with progress_bar(total=len(entries), desc=desc, unit="clip") as bar:
        for clips, _ in iter_batches(entries, pipeline, batch_size):
            store.append(clips)
            bar.update(len(clips))
    return store


def calibrate(
    info: ModelInfo, clips: ClipStore, algo: str, cfg: PTQConfig, out_dir: Path, batch_size: int | None = None
) -> Candidate:
    """Run PaddleSlim's ``quant_post_static`` with ``algo`` on ``clips``; INT8 model in ``out_dir``."""
    import paddle
    from paddleslim.quant import quant_post_static

    spec = info.inputs[0]
    batch = batch_size or cfg.batch_size
    model_dir, model_file, shape = info.model_dir, info.model_file.name, list(spec.shape)
    chunk, chunked, skip = chunk_size(clips.shape[1:]), None, None
    if chunk is not None:
        chunked = per_image_program(info.model_file, spec.name, clips.shape[1], chunk)
    dataset: paddle.io.Dataset
    if chunk is not None and chunked is not None:  # a many-image clip of per-image layers: `chunk` images at a time
        program, places = chunked
        skip = head_tensors(program, places)  # ranges there depend on the chunk: the head stays FP32
        model_dir = out_dir.parent / f"{out_dir.name}-per-image"
        model_dir.mkdir(parents=True, exist_ok=True)
        (model_dir / model_file).write_bytes(program.SerializeToString())
        (model_dir / info.params_file.name).symlink_to(info.params_file.resolve())
        shape = [shape[0], chunk, *shape[2:]]
        pieces, batch = clips.shape[1] // chunk, 1

        class _ImageChunks(paddle.io.Dataset):
            def __getitem__(self, i):
                clip = clips[i // pieces]
                return clip[(i % pieces) * chunk : (i % pieces + 1) * chunk]

            def __len__(self):
                return len(clips) * pieces

        dataset = _ImageChunks()
    else:

        class _Clips(paddle.io.Dataset):
            def __getitem__(self, i):
                return clips[i]

            def __len__(self):
                return len(clips)

        dataset = _Clips()
    t0 = time.perf_counter()
    paddle.enable_static()
    try:
        # Fresh programs and scope per run: calibrations must not share variables or tensors.
        with (
            paddle.static.program_guard(paddle.static.Program(), paddle.static.Program()),
            paddle.static.scope_guard(paddle.static.Scope()),
        ):
            # PaddleSlim 2.6 ignores sample/batch generators: only a feed_list DataLoader works.
            feed = paddle.static.data(spec.name, shape, "float32")
            loader = paddle.io.DataLoader(
                dataset, feed_list=[feed], batch_size=batch, return_list=False, drop_last=False, shuffle=False
            )
            quant_post_static(
                executor=paddle.static.Executor(paddle.CPUPlace()),
                model_dir=str(model_dir),
                quantize_model_path=str(out_dir),
                data_loader=loader,
                model_filename=model_file,
                params_filename=info.params_file.name,
                save_model_filename=QUANT_MODEL,
                save_params_filename=QUANT_PARAMS,
                batch_size=batch,
                batch_nums=-(-len(dataset) // batch),
                algo=algo,
                hist_percent=cfg.hist_percent,
                bias_correction=cfg.bias_correction,
                quantizable_op_type=list(cfg.quantize_ops),
                onnx_format=cfg.onnx_format,
                optimize_model=True,
                skip_tensor_list=skip,
            )
    except Exception as exc:
        raise QuantizationError(
            f"PaddleSlim calibration with algo {algo} failed: {exc}; another algorithm may "
            f"calibrate this model (--algo hist, or --algo auto to try several)"
        ) from exc
    finally:
        paddle.disable_static()
    if chunk is not None and chunked is not None:
        restore_image_count(out_dir / QUANT_MODEL, spec.name, chunk, clips.shape[1], chunked[1], head=skip)
        shutil.rmtree(model_dir, ignore_errors=True)
    seconds = time.perf_counter() - t0
    params, program = (out_dir / QUANT_PARAMS).stat().st_size, (out_dir / QUANT_MODEL).stat().st_size
    return Candidate(
        algo,
        out_dir,
        seconds,
        {"params_bytes": params, "program_bytes": program, "total_bytes": params + program},
        images_per_calibration_batch=chunk if chunked is not None else None,
    )


def _quant_dequant_ops(model_file: Path) -> int:
    """How many quantize/dequantize ops INT8 added: the work INT8 kernels must win back."""
    from vslim.inference.program import QUANT_OP_TYPES, op_types, parse_program

    return sum(t in QUANT_OP_TYPES for t in op_types(parse_program(model_file)))


def _cpu_int8_instructions() -> list[str]:
    """The CPU's INT8 dot-product instructions (VNNI, AMX): without them INT8 rarely beats FP32."""
    from vslim.benchmarks.environment import cpu_info

    return [f for f, on in cpu_info()["flags"].items() if on and f in ("avx512_vnni", "avx_vnni", "amx_int8")]


def _val_scores(summary: EvalSummary | None, what: str) -> tuple[float, float | None]:
    """Top-1 on the labelled validation list and top-1 agreement with FP32 (set whenever ``val`` is given)."""
    if summary is None or summary.top1 is None:
        raise QuantizationError(f"{what} has no top-1 on a labelled validation list; give val")
    return summary.top1, summary.agreement


def _choose(cands: list[Candidate], cfg: PTQConfig, fp32_val: EvalSummary | None) -> Candidate:
    if cfg.algo != "auto":
        return cands[0]
    ok = [c for c in cands if c.within_tolerance]
    if not ok:
        rows = ", ".join(f"{c.algo}: top-1 {100 * _val_scores(c.val, c.algo)[0]:.1f}%" for c in cands)
        raise QuantizationError(
            f"no PTQ algorithm kept top-1 within {100 * cfg.tolerance:.1f} points of FP32 "
            f"({100 * _val_scores(fp32_val, 'FP32')[0]:.1f}%): {rows}. Try more calibration clips, a larger "
            "--tolerance, or quantization-aware training (`vslim compress qat`)"
        )
    # Most accurate first; ties broken by agreement with FP32, then by list order (faster algorithms first).
    return max(ok, key=lambda c: (*_val_scores(c.val, c.algo), -cands.index(c)))


def quantize(cfg: PTQConfig) -> PTQResult:
    """Quantize ``cfg.model_dir`` into ``cfg.output_dir`` (written atomically, with reports).

    PaddleSlim's own logs and bars stay off unless ``--debug`` (:mod:`vslim.upstream`).
    """
    with quiet_upstream("paddleslim.quant"):
        return _quantize(cfg)


def _quantize(cfg: PTQConfig) -> PTQResult:
    cfg.validate()
    check_output_free(cfg.output_dir, cfg.overwrite)
    info = inspect_model(cfg.model_dir, cfg.model_filename, cfg.params_filename)
    if info.quantized:
        raise QuantizationError(f"{info.model_file} is already quantized; give the FP32 model")
    if len(info.inputs) > 1:
        names = ", ".join(s.name for s in info.inputs)
        raise QuantizationError(
            f"{info.model_dir} takes {len(info.inputs)} inputs ({names}); vslim's PTQ calibrates "
            "single-input models only. What works for it: FP32 serving on every runtime "
            "(vslim-package --target serving picks the fastest), or OpenVINO BF16 on a CPU "
            "with AVX-512 BF16 or AMX"
        )
    pre = cfg.preprocess or info.meta.preprocess
    # a PaddleVideo model calibrates on the clips its own inference helper makes (data/recipes.py)
    pipeline = ClipPipeline(pre) if cfg.preprocess else ClipPipeline.for_model(info.meta)
    calib_entries = read_list(cfg.calib)
    if cfg.batch_nums is not None:
        calib_entries = calib_entries[: cfg.batch_nums * cfg.batch_size]
    val_entries = read_list(cfg.val) if cfg.val else None
    clips = load_clips(
        calib_entries, pipeline, bounded_batch(cfg.batch_size, info.inputs[0].shape[1:]), "calibration clips"
    )
    if clips.shape[1:] != tuple(d for d in info.inputs[0].shape[1:]):
        raise QuantizationError(
            f"calibration clips have shape {list(clips.shape[1:])} but the model takes "
            f"{list(info.inputs[0].shape[1:])}: the preprocessing does not match the model"
        )

    batch = bounded_batch(cfg.batch_size, clips.shape[1:])
    if batch < cfg.batch_size:
        print(
            f"  clips of shape {list(clips.shape[1:])}: batches of {batch} clip(s) instead of {cfg.batch_size}, to bound memory",
            file=sys.stderr,
        )
    # One model in memory at a time (a 250-image clip's buffers are gigabytes): each is loaded, run over the
    # decoded clips and freed before the next; only the outputs are kept.
    pcfg = PredictorConfig(threads=cfg.threads)
    val_clips, val_labels = load_labelled(val_entries, pipeline, batch) if val_entries else (None, None)
    fp32 = PaddlePredictor(info.model_dir, pcfg, info=info)
    fp32_calib = run_bounded(fp32.run, clips, batch)  # `batch` is bounded already: run_batched's chunks
    fp32_val_out = run_bounded(fp32.run, val_clips, batch) if val_clips is not None else None
    del fp32
    algos = cfg.candidates if cfg.algo == "auto" else [cfg.algo]
    with tempfile.TemporaryDirectory(prefix="vslim-ptq-") as work:
        cands, failed = [], []
        for algo in algos:
            try:
                cand = calibrate(info, clips, algo, cfg, Path(work) / algo, batch)
            except QuantizationError as exc:
                if cfg.algo != "auto":
                    raise
                # PaddleSlim's avg fails on some models (TSM: `_sample_avg` on a 0-D tensor); the others may not
                failed.append({"algo": algo, "error": str(exc)})
                print(f"  {algo}: failed, trying the next algorithm — {exc}", file=sys.stderr)
                continue
            # the candidate is the FP32 model's INT8 twin: a zoo model's is not probed either (inference/probe.py)
            info.meta.derive(precision="int8", model_file=QUANT_MODEL, params_file=QUANT_PARAMS).save(cand.model_dir)
            probe = min(4, batch)  # the op-set choice runs its sample as one batch
            cand.onednn_int8_ops, cand.op_set_choice = choose_onednn_int8_ops(
                cand.model_dir, clips[:probe], fp32_calib[:probe], cfg.threads
            )
            pred = PaddlePredictor(
                cand.model_dir, PredictorConfig(threads=cfg.threads, onednn_int8_ops=cand.onednn_int8_ops)
            )
            cand.calib = summarize(run_bounded(pred.run, clips, batch), None, fp32_calib)
            if val_clips is not None:
                cand.val = summarize(run_bounded(pred.run, val_clips, batch), val_labels, fp32_val_out)
            del pred
            cands.append(cand)
        if not cands:
            raise QuantizationError("every PTQ algorithm failed: " + "; ".join(f["error"] for f in failed))
        fp32_val = None
        if val_clips is not None and fp32_val_out is not None:  # fp32_val_out: the FP32 outputs of val_clips
            fp32_val = summarize(fp32_val_out, val_labels)
            fp32_top1, _ = _val_scores(fp32_val, "FP32")
            for c in cands:
                top1, _ = _val_scores(c.val, c.algo)
                c.within_tolerance = (fp32_top1 - top1) <= cfg.tolerance + 1e-9
        chosen = _choose(cands, cfg, fp32_val)
        latency = None
        if cfg.measure_latency:
            one = clips[:1]
            fp32_ms = _latency_ms(PaddlePredictor(info.model_dir, pcfg, info=info), one)
            int8_ms = _latency_ms(
                PaddlePredictor(
                    chosen.model_dir, PredictorConfig(threads=cfg.threads, onednn_int8_ops=chosen.onednn_int8_ops)
                ),
                one,
            )
            latency = {
                "fp32": fp32_ms,
                "int8": int8_ms,
                "threads": cfg.threads,
                "batch": 1,
                "cpu_int8_instructions": _cpu_int8_instructions(),
            }
        report = {
            "fp32_model": str(info.model_dir),
            "int8_model": str(Path(cfg.output_dir)),
            "algo": chosen.algo,
            "mode": cfg.algo,
            "tolerance": cfg.tolerance,
            "calibration_clips": len(clips),
            "batch_size": batch,
            "clips_on_disk": clips.on_disk,
            "validation_clips": len(val_entries) if val_entries else 0,
            "fp32": {**model_size(info), "val": fp32_val.to_dict() if fp32_val else None},
            "int8": {**chosen.to_dict(), "quant_dequant_ops": _quant_dequant_ops(chosen.model_dir / QUANT_MODEL)},
            "candidates": [c.to_dict() for c in cands],
            "failed_candidates": failed,
            "latency_ms": latency,
            "config": to_dict(cfg),
        }
        report["int8_speed_note"] = int8_speed_note(report)
        with atomic_output_dir(cfg.output_dir, overwrite=cfg.overwrite) as tmp:
            shutil.copy2(chosen.model_dir / QUANT_MODEL, tmp / QUANT_MODEL)
            shutil.copy2(chosen.model_dir / QUANT_PARAMS, tmp / QUANT_PARAMS)
            meta = info.meta.derive(
                precision="int8",
                model_file=QUANT_MODEL,
                params_file=QUANT_PARAMS,
                input_name=info.inputs[0].name,
                output_name=info.outputs[0].name,
                onednn_int8_ops=chosen.onednn_int8_ops,
                source=str(info.model_dir),
                quantization={
                    "method": "ptq",
                    "algo": chosen.algo,
                    "onnx_format": cfg.onnx_format,
                    "quantize_ops": list(cfg.quantize_ops),
                    "calibration_clips": len(clips),
                },
            )
            meta.save(tmp)
            write_json(tmp / "ptq_report.json", report)
            write_text_atomic(tmp / "ptq_report.md", ptq_markdown(report))
    chosen.model_dir = Path(cfg.output_dir)
    return PTQResult(Path(cfg.output_dir), chosen, cands, fp32_val, model_size(info), report)
