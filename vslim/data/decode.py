"""Decoding only the frames a clip needs.

A 10 s clip has ~300 frames but PP-TSM looks at 8. Decoding all of them (as
PaddleVideo's ``VideoDecoder`` does) dominates preprocessing time, so the video
reader seeks to far-away frames and merely ``grab``s (decodes without colour
conversion or copy) the few frames between close ones.

Measured floor (320x240 mp4, 10 s): an OpenCV seek costs ~1.7 ms, because OpenCV
seeks 16 frames before the target and decodes forward from the key frame before
that; 8 sampled frames take ~14 ms against ~21 ms to decode all 300. Reading the
frames with several captures in parallel threads gained nothing (FFmpeg already
decodes on several threads).
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from ..errors import DataError

# Below this gap, decoding forward beats a seek (which restarts at a key frame).
SEEK_GAP = 12


class VideoReader:
    """Random access to the frames of one video file, RGB ``uint8``."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        if not self.path.is_file():
            raise DataError(f"video {self.path} does not exist")
        self._cap = cv2.VideoCapture(str(self.path))
        if not self._cap.isOpened():
            raise DataError(f"video {self.path} cannot be opened by OpenCV (not a video, or an unsupported codec)")
        self._pos = 0
        count = int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT))
        self.num_frames = count if count > 0 else self._count_by_decoding()
        if self.num_frames < 1:
            raise DataError(f"video {self.path} has no decodable frames")

    def _count_by_decoding(self) -> int:
        n = 0
        while self._cap.grab():
            n += 1
        self._rewind()
        return n

    def _rewind(self) -> None:
        self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
        self._pos = 0

    def read(self, indices) -> np.ndarray:
        """Frames at ``indices`` (any order, repeats allowed) as ``[T, H, W, 3]`` RGB."""
        wanted = sorted(set(int(i) for i in indices))
        got = self._read_sorted(wanted)
        if got is None:
            # The container's frame count was wrong: fall back to a full decode.
            frames = self._decode_all()
            self.num_frames = len(frames)
            return np.stack([frames[min(int(i), len(frames) - 1)] for i in indices])
        return np.stack([got[int(i)] for i in indices])

    def _read_sorted(self, wanted: list[int]) -> dict[int, np.ndarray] | None:
        out: dict[int, np.ndarray] = {}
        for target in wanted:
            gap = target - self._pos
            if gap < 0 or gap > SEEK_GAP:
                self._cap.set(cv2.CAP_PROP_POS_FRAMES, target)
                self._pos = target
            else:
                for _ in range(gap):
                    if not self._cap.grab():
                        return None
                self._pos = target
            ok, frame = self._cap.read()
            if not ok or frame is None:
                return None
            self._pos += 1
            out[target] = frame[:, :, ::-1]
        return out

    def _decode_all(self) -> list[np.ndarray]:
        self._rewind()
        frames = []
        while True:
            ok, frame = self._cap.read()
            if not ok:
                break
            frames.append(frame[:, :, ::-1])
        self._pos = len(frames)
        if not frames:
            raise DataError(f"video {self.path} has no decodable frames")
        return frames

    def close(self) -> None:
        self._cap.release()

    def __enter__(self) -> "VideoReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_frame_files(frame_dir: Path, indices, suffix: str, num_frames: int) -> np.ndarray:
    """Frames ``indices`` (0-based) from a folder of numbered images, RGB ``[T, H, W, 3]``."""
    frame_dir = Path(frame_dir)
    if not frame_dir.is_dir():
        raise DataError(f"frame folder {frame_dir} does not exist")
    cache: dict[int, np.ndarray] = {}
    frames = []
    for i in indices:
        i = int(i)
        if i not in cache:
            path = frame_dir / suffix.format(i + 1)
            if not path.is_file():
                raise DataError(
                    f"frame folder {frame_dir} has too few frames: {path.name} is missing "
                    f"(the list says {num_frames} frames); fix num_frames in the list or re-extract the frames"
                )
            img = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if img is None:
                raise DataError(f"frame {path} cannot be decoded as an image")
            cache[i] = img[:, :, ::-1]
        frames.append(cache[i])
    shapes = {f.shape for f in frames}
    if len(shapes) > 1:
        raise DataError(f"frames in {frame_dir} have different sizes {sorted(shapes)}")
    return np.stack(frames)
