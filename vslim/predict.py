"""Classifying video files with an inference model, printed as PaddleVideo's ``tools/predict.py`` does."""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from .data.decode import read_frame_files
from .data.pipeline import ClipPipeline
from .errors import DataError
from .inference import Predictor
from .accuracy import softmax, topk

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".flv", ".mpg", ".mpeg")
FRAME_TEMPLATE = "img_{:05}.jpg"


@dataclass
class Prediction:
    source: str
    classes: list[int]
    scores: list[float]
    labels: list[str]

    def to_dict(self) -> dict:
        return asdict(self)


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
            raise DataError(f"{path} holds neither videos ({', '.join(VIDEO_SUFFIXES)}) nor frames named like "
                            f"{frame_template.format(1)}")
        return videos
    raise DataError(f"input {path} does not exist; give a video file, a frame folder or a folder of videos")


def load_clip(source: Path, pipeline: ClipPipeline, frame_template: str = FRAME_TEMPLATE) -> np.ndarray:
    if source.is_dir():
        n = _frame_count(source, frame_template)
        frames = read_frame_files(source, pipeline.indices(n), frame_template, n)
        return pipeline.transform(frames)
    return pipeline.from_video(source)


def classify(predictor: Predictor, sources: Iterable[Path], top_k: int = 1,
             frame_template: str = FRAME_TEMPLATE, decoder: str = "auto") -> list[Prediction]:
    """Top-k classes (softmax scores) of each source, one clip per source."""
    meta = predictor.meta
    pipeline = ClipPipeline(meta.preprocess, decoder)
    results = []
    for source in sources:
        clip = load_clip(Path(source), pipeline, frame_template)
        logits = predictor.run(clip[None])[0]
        probs = softmax(logits) if meta.output_kind == "logits" else logits
        ids, scores = topk(probs, top_k)
        results.append(Prediction(str(source), [int(i) for i in ids], [float(s) for s in scores],
                                  [meta.label_name(int(i)) for i in ids]))
    return results


def format_paddlevideo(pred: Prediction) -> str:
    """The lines PaddleVideo's ``tools/predict.py`` prints, plus the class name."""
    lines = [f"Current video file: {pred.source}"]
    for j, (cid, score, label) in enumerate(zip(pred.classes, pred.scores, pred.labels), start=1):
        lines.append(f"\ttop-{j} class: {cid}")
        lines.append(f"\ttop-{j} score: {score}")
        lines.append(f"\ttop-{j} label: {label}")
    return "\n".join(lines)
