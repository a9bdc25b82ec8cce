"""``vslim-bench e2e``: one clip from a video file to classes, preprocessing timed apart from inference.

PaddleVideo publishes this split (its PP-TSM preprocessing is 52 ms of a 63 ms
GPU clip) because decoding, not the network, often dominates. Stages timed per
clip: decode + sample (vslim reads only the frames it samples), transform
(scale, crop, normalise), inference. The same clip through PaddleVideo's way of
decoding (every frame, then sample) is timed as the baseline.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from vslim.config import PredictorConfig
from vslim.data.decode import VideoReader, open_video
from vslim.data.pipeline import ClipPipeline, as_inputs
from vslim.data.synth import render_clip
from vslim.errors import DataError
from vslim.inference import PaddlePredictor, inspect_model
from vslim.progress import progress_bar

from .environment import environment
from .stats import latency_stats


@dataclass
class E2EBench:
    model: str
    video: str | None = None  # default: a synthetic video of video_seconds at width x height
    iterations: int = 20
    warmup: int = 2
    threads: int = 2
    video_seconds: float = 10.0
    fps: int = 30
    width: int = 320
    height: int = 240
    decoder: str = "auto"  # auto (PyAV when installed) | pyav | opencv; OpenCV is timed too as a baseline


def make_video(path: Path, seconds: float, fps: int, width: int, height: int, seed: int = 0) -> Path:
    """A moving-shape video (mp4v) of the given length and size, for timing decoders."""
    frames = render_clip(0, np.random.default_rng(seed), int(seconds * fps), height, width)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    if not writer.isOpened():
        raise DataError(f"OpenCV cannot write {path}")
    for f in frames:
        writer.write(np.ascontiguousarray(f[:, :, ::-1]))
    writer.release()
    return path


def decode_all_then_sample(path: Path, pipeline: ClipPipeline) -> np.ndarray:
    """PaddleVideo's ``tools/predict.py`` way: decode every frame, then pick the sampled ones."""
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame[:, :, ::-1])
    cap.release()
    return np.stack([frames[i] for i in pipeline.indices(len(frames))])


def run_e2e(cfg: E2EBench, say: Callable[[str], None] = print) -> dict:
    info = inspect_model(cfg.model)
    pipeline = ClipPipeline.for_model(info.meta, cfg.decoder)
    predictor = PaddlePredictor(info.model_dir, PredictorConfig(threads=cfg.threads), info)
    with tempfile.TemporaryDirectory(prefix="vslim-e2e-") as tmp:
        video = (
            Path(cfg.video)
            if cfg.video
            else make_video(Path(tmp) / "clip.mp4", cfg.video_seconds, cfg.fps, cfg.width, cfg.height)
        )
        with open_video(video, cfg.decoder) as probe:
            num_frames, decoder = probe.num_frames, probe.decoder
            height, width = probe.read([0]).shape[1:3]
        stages: dict[str, list[float]] = {
            "decode_sample_ms": [],
            "transform_ms": [],
            "inference_ms": [],
            "total_ms": [],
            "baseline_decode_all_ms": [],
            "baseline_opencv_sampled_ms": [],
        }
        with progress_bar(total=cfg.warmup + cfg.iterations, desc="e2e", unit="clip") as bar:
            for i in range(cfg.warmup + cfg.iterations):
                t0 = time.perf_counter()
                frames = pipeline.sample_video(video)
                t1 = time.perf_counter()
                clip = pipeline.transform(frames)
                t2 = time.perf_counter()
                predictor.run_feeds({spec.name: x[None] for spec, x in zip(info.inputs, as_inputs(clip))})
                t3 = time.perf_counter()
                baseline = decode_all_then_sample(video, pipeline)
                t4 = time.perf_counter()
                with VideoReader(video) as reader:
                    opencv_frames = reader.read(pipeline.indices(reader.num_frames))
                t5 = time.perf_counter()
                if i >= cfg.warmup:
                    for key, dt in (
                        ("decode_sample_ms", t1 - t0),
                        ("transform_ms", t2 - t1),
                        ("inference_ms", t3 - t2),
                        ("total_ms", t3 - t0),
                        ("baseline_decode_all_ms", t4 - t3),
                        ("baseline_opencv_sampled_ms", t5 - t4),
                    ):
                        stages[key].append(dt)
                bar.update(1)
        # Every way must see the same frames, or the timings compare different work.
        frame_diff = max(
            int(np.abs(baseline.astype(np.int16) - f.astype(np.int16)).max()) for f in (frames, opencv_frames)
        )
    stats = {k: latency_stats(v) for k, v in stages.items()}
    pre = np.array(stages["decode_sample_ms"]) + np.array(stages["transform_ms"])
    stats["preprocess_ms"] = latency_stats(pre)
    return {
        "kind": "e2e",
        "environment": environment(),
        "config": cfg.__dict__,
        "model": {"path": str(info.model_dir), "precision": info.precision, "arch": info.meta.arch},
        "video": {
            "path": str(cfg.video or f"synthetic {cfg.video_seconds:g} s"),
            "frames": num_frames,
            "width": int(width),
            "height": int(height),
        },
        "decoder": decoder,
        "max_frame_diff_vs_decode_all": frame_diff,
        "stages": stats,
        "preprocess_share_of_total": float(stats["preprocess_ms"]["p50_ms"] / stats["total_ms"]["p50_ms"]),
        "decode_speedup_vs_decode_all": float(
            stats["baseline_decode_all_ms"]["p50_ms"] / stats["decode_sample_ms"]["p50_ms"]
        ),
        "decode_speedup_vs_opencv_sampled": float(
            stats["baseline_opencv_sampled_ms"]["p50_ms"] / stats["decode_sample_ms"]["p50_ms"]
        ),
    }
