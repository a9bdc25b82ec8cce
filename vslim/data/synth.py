"""A deterministic synthetic video data set for demos and tests.

Each clip shows a shape moving over a textured background, plus a static
distractor shape. The class is the *motion* (eight directions, growing,
shrinking), never the look of a single frame: shape, colour, size and start
position are random, so a model has to compare frames over time, which is exactly
what the temporal shift in TSM/PP-TSM is for.

Everything is drawn with a seeded generator, so ``--seed`` fixes every pixel; the
same clips are written as video files (``.mp4``) and as PaddleVideo rawframe
folders, with list files for train / val / calibration in both formats.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from ..errors import DataError
from ..fsio import atomic_output_dir

CLASSES = (
    "move_right",
    "move_left",
    "move_down",
    "move_up",
    "move_down_right",
    "move_up_left",
    "move_down_left",
    "move_up_right",
    "grow",
    "shrink",
)
_DIRECTIONS = {
    "move_right": (1, 0),
    "move_left": (-1, 0),
    "move_down": (0, 1),
    "move_up": (0, -1),
    "move_down_right": (1, 1),
    "move_up_left": (-1, -1),
    "move_down_left": (-1, 1),
    "move_up_right": (1, -1),
}
SPLITS = ("train", "val", "calib")


@dataclass
class SynthConfig:
    """Size of the synthetic set. Defaults train the small PP-TSM to >90% in minutes."""

    seed: int = 0
    num_train: int = 400
    num_val: int = 100
    num_calib: int = 32
    num_frames: int = 32
    height: int = 96
    width: int = 128
    fps: int = 16
    write_videos: bool = True
    write_frames: bool = True

    def validate(self) -> SynthConfig:
        if min(self.num_train, self.num_val, self.num_calib) < 1:
            raise DataError("every split needs at least one clip")
        if self.num_frames < 8 or min(self.height, self.width) < 48:
            raise DataError("clips need >= 8 frames of at least 48x48 pixels")
        if not (self.write_videos or self.write_frames):
            raise DataError("nothing to write: enable videos, frames or both")
        return self


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    base = rng.integers(20, 110, size=3)
    noise = rng.normal(0, 12, size=(h // 8 + 1, w // 8 + 1, 3))
    noise = cv2.resize(noise, (w, h), interpolation=cv2.INTER_CUBIC)
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def _draw(img: np.ndarray, kind: int, cx: float, cy: float, r: float, color) -> None:
    c = (int(round(cx)), int(round(cy)))
    r = max(2, int(round(r)))
    if kind == 0:
        cv2.circle(img, c, r, color, -1, lineType=cv2.LINE_AA)
    elif kind == 1:
        cv2.rectangle(img, (c[0] - r, c[1] - r), (c[0] + r, c[1] + r), color, -1)
    else:
        pts = np.array([[c[0], c[1] - r], [c[0] - r, c[1] + r], [c[0] + r, c[1] + r]], np.int32)
        cv2.fillPoly(img, [pts], color, lineType=cv2.LINE_AA)


def _bright_color(rng: np.random.Generator):
    col = rng.integers(130, 256, size=3)
    col[rng.integers(0, 3)] = 255
    return tuple(int(v) for v in col)


def render_clip(label: int, rng: np.random.Generator, num_frames: int, h: int, w: int) -> np.ndarray:
    """Frames ``[T, H, W, 3]`` RGB uint8 of one clip of class ``label``."""
    name = CLASSES[label]
    bg = _background(rng, h, w)
    kind = int(rng.integers(0, 3))
    color = _bright_color(rng)
    frames = np.empty((num_frames, h, w, 3), np.uint8)
    # A static distractor: looks like a mover, never moves.
    d_kind, d_color = int(rng.integers(0, 3)), _bright_color(rng)
    d_r = float(rng.uniform(4, 8))
    d_x, d_y = float(rng.uniform(d_r, w - d_r)), float(rng.uniform(d_r, h - d_r))
    if name in _DIRECTIONS:
        dx, dy = _DIRECTIONS[name]
        norm = math.hypot(dx, dy)
        speed = float(rng.uniform(0.35, 0.5)) * min(h, w) / num_frames
        vx, vy = dx / norm * speed, dy / norm * speed
        r = float(rng.uniform(6, 11))
        travel_x, travel_y = vx * (num_frames - 1), vy * (num_frames - 1)
        x0 = rng.uniform(r + max(0, -travel_x), w - r - max(0, travel_x))
        y0 = rng.uniform(r + max(0, -travel_y), h - r - max(0, travel_y))
        path = [(x0 + vx * t, y0 + vy * t, r) for t in range(num_frames)]
    else:
        small, big = float(rng.uniform(4, 7)), float(rng.uniform(16, 22))
        r0, r1 = (small, big) if name == "grow" else (big, small)
        x0, y0 = rng.uniform(big, w - big), rng.uniform(big, h - big)
        path = [(x0, y0, r0 + (r1 - r0) * t / (num_frames - 1)) for t in range(num_frames)]
    for t, (x, y, r) in enumerate(path):
        img = bg.copy()
        _draw(img, d_kind, d_x, d_y, d_r, d_color)
        _draw(img, kind, x, y, r, color)
        frames[t] = img
    return frames


def _write_video(path: Path, frames: np.ndarray, fps: int) -> None:
    h, w = frames.shape[1:3]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    if not writer.isOpened():
        raise DataError(f"OpenCV cannot write mp4 video {path}: this OpenCV build lacks the mp4v encoder")
    for f in frames:
        writer.write(np.ascontiguousarray(f[:, :, ::-1]))
    writer.release()


def _write_frames(folder: Path, frames: np.ndarray) -> None:
    folder.mkdir(parents=True)
    for i, f in enumerate(frames, start=1):
        cv2.imwrite(
            str(folder / f"img_{i:05d}.jpg"), np.ascontiguousarray(f[:, :, ::-1]), [cv2.IMWRITE_JPEG_QUALITY, 95]
        )


def generate(
    out: Path | str,
    cfg: SynthConfig = SynthConfig(),
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Write the data set to ``out`` (atomically) and return it.

    Layout: ``videos/<split>/<id>.mp4``, ``rawframes/<split>/<id>/img_00001.jpg``,
    lists ``{split}.list`` (videos) and ``{split}_frames.list`` (frames), relative to
    ``out``; ``labels.txt``; ``demo.mp4`` (a validation clip); ``dataset.json``.
    """
    cfg.validate()
    counts = {"train": cfg.num_train, "val": cfg.num_val, "calib": cfg.num_calib}
    total = sum(counts.values())
    root_rng = np.random.default_rng(cfg.seed)
    # One child seed per split, so adding train clips never changes val clips.
    split_seeds = {s: int(root_rng.integers(0, 2**31 - 1)) for s in SPLITS}
    done = 0
    with atomic_output_dir(out, overwrite=overwrite) as tmp:
        for split in SPLITS:
            rng = np.random.default_rng(split_seeds[split])
            video_rows, frame_rows = [], []
            for i in range(counts[split]):
                label = i % len(CLASSES)  # balanced classes
                frames = render_clip(label, rng, cfg.num_frames, cfg.height, cfg.width)
                stem = f"{split}_{i:05d}_{CLASSES[label]}"
                if cfg.write_videos:
                    rel = Path("videos") / split / f"{stem}.mp4"
                    (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
                    _write_video(tmp / rel, frames, cfg.fps)
                    video_rows.append(f"{rel.as_posix()} {label}")
                if cfg.write_frames:
                    rel = Path("rawframes") / split / stem
                    _write_frames(tmp / rel, frames)
                    frame_rows.append(f"{rel.as_posix()} {cfg.num_frames} {label}")
                done += 1
                if progress:
                    progress(done, total)
            if video_rows:
                (tmp / f"{split}.list").write_text("\n".join(video_rows) + "\n")
            if frame_rows:
                (tmp / f"{split}_frames.list").write_text("\n".join(frame_rows) + "\n")
        (tmp / "labels.txt").write_text("\n".join(CLASSES) + "\n")
        if cfg.write_videos:
            first_val = sorted((tmp / "videos" / "val").glob("*.mp4"))[0]
            (tmp / "demo.mp4").write_bytes(first_val.read_bytes())
        meta = {"generator": "vslim.data.synth", "classes": list(CLASSES), "config": asdict(cfg)}
        (tmp / "dataset.json").write_text(json.dumps(meta, indent=2) + "\n")
    return Path(out)
