"""Classifying video files with an inference model, printed as PaddleVideo's ``tools/predict.py`` does."""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from .data.decode import probe_video, read_frame_files
from .data.pipeline import ClipPipeline, as_inputs
from .data.sampling import Sampling, sampling_record
from .errors import DataError
from .inference import Predictor
from .topk import TopK

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".flv", ".mpg", ".mpeg")
FRAME_TEMPLATE = "img_{:05}.jpg"


def _frame_count(folder: Path, template: str) -> int:
    parts = re.split(r"\{[^}]*\}", template, maxsplit=1)
    if len(parts) != 2:
        return 0
    pattern = re.compile("^" + re.escape(parts[0]) + r"(\d+)" + re.escape(parts[1]) + "$")
    numbers = [int(m.group(1)) for p in folder.iterdir() if (m := pattern.match(p.name))]
    return max(numbers) if numbers else 0


def expand_inputs(path: Path | str, frame_template: str = FRAME_TEMPLATE) -> list[Path]:
    """A video, a frame folder, or a folder of videos (as PaddleVideo's predict accepts) -> sources."""
    path = Path(path)
    if path.is_file():
        return [path]
    if path.is_dir():
        if _frame_count(path, frame_template):
            return [path]
        videos = sorted(p for p in path.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
        if not videos:
            raise DataError(
                f"{path} holds neither videos ({', '.join(VIDEO_SUFFIXES)}) nor frames named like "
                f"{frame_template.format(1)}"
            )
        return videos
    raise DataError(f"input {path} does not exist; give a video file, a frame folder or a folder of videos")


def check_inputs(sources: Iterable[Path], decoder: str = "auto") -> None:
    """Open every video once (no decoding) so a bad input fails before the model loads (seconds)."""
    for source in sources:
        if not Path(source).is_dir():
            probe_video(source, decoder)


def load_clip(
    source: Path, pipeline: ClipPipeline, frame_template: str = FRAME_TEMPLATE
) -> tuple[np.ndarray, Sampling | None]:
    """The clip of a video or frame folder, and the sampling record when it had to repeat frames."""
    if source.is_dir():
        n = _frame_count(source, frame_template)
        idx = pipeline.indices(n)
        frames = read_frame_files(source, idx, frame_template, n)
        return pipeline.transform(frames), sampling_record(n, idx)
    return pipeline.video_clip(source)


def classify(
    predictor: Predictor,
    sources: Iterable[Path],
    top_k: int = 1,
    frame_template: str = FRAME_TEMPLATE,
    decoder: str = "auto",
) -> list[TopK]:
    """Top-k classes (softmax scores) of each source, one clip per source."""
    meta = predictor.meta
    pipeline = ClipPipeline.for_model(meta, decoder)
    names = [s.name for s in predictor.info.inputs]
    results = []
    for source in sources:
        clip, sampling = load_clip(Path(source), pipeline, frame_template)
        feeds = {n: x[None] for n, x in zip(names, as_inputs(clip))}
        logits = predictor.run_feeds(feeds)[predictor.info.outputs[0].name][0]
        results.append(TopK.of(logits, meta, top_k, sampling=sampling, source=str(source)))
    return results


def format_paddlevideo(pred: TopK) -> str:
    """The lines PaddleVideo's ``tools/predict.py`` prints, plus the class name and a note on repeated frames."""
    lines = [f"Current video file: {pred.source}"]
    for j, (cid, score, label) in enumerate(zip(pred.classes, pred.scores, pred.labels), start=1):
        lines.append(f"\ttop-{j} class: {cid}")
        lines.append(f"\ttop-{j} score: {score}")
        lines.append(f"\ttop-{j} label: {label}")
    if pred.sampling is not None:
        lines.append(f"\tnote: {pred.sampling.note}")
    return "\n".join(lines)
