"""The PP-TSM clip pipeline: source -> sampled frames -> model input ``[num_seg*seg_len, 3, S, S]``."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..config import PreprocessConfig
from ..errors import DataError
from . import transforms as T
from .decode import open_video, read_frame_files
from .lists import VideoEntry
from .sampling import Sampling, sampling_record, segment_indices


MAX_ASPECT = 16  # widest frame shape accepted (panoramic video is about 4:1)


class ClipPipeline:
    """Turns a video, a frame folder or an in-memory frame array into one model input clip.

    Evaluation takes the centre frame of each segment and a centre crop; training
    takes a random frame per segment and a random crop. No flips: in motion data a
    mirrored clip is a different class.
    """

    def __init__(self, cfg: PreprocessConfig, decoder: str = "auto"):
        self.cfg = cfg.validate()
        self.decoder = decoder  # "auto" (PyAV when installed), "pyav" or "opencv": same frames, PyAV faster

    def clip_shape(self) -> tuple[int, int, int, int]:
        s = self.cfg.target_size
        return (self.cfg.frames_per_clip, 3, s, s)

    def indices(self, num_frames: int, train: bool = False, rng=None) -> np.ndarray:
        return segment_indices(num_frames, self.cfg.num_seg, self.cfg.seg_len, train, rng)

    def load(self, entry: VideoEntry, train: bool = False, rng=None) -> np.ndarray:
        """Decode and transform the clip of one list entry; errors name the list line."""
        try:
            if entry.is_frames:
                idx = self.indices(entry.num_frames, train, rng)
                frames = read_frame_files(entry.path, idx, entry.suffix, entry.num_frames)
            else:
                frames = self.sample_video(entry.path, train, rng)
        except DataError as exc:
            raise DataError(f"{entry.where}: {exc}" if entry.where else str(exc)) from None
        return self.transform(frames, train, rng)

    def sample_video(self, path: Path | str, train: bool = False, rng=None) -> np.ndarray:
        return self.sample_video_noting(path, train, rng)[0]

    def sample_video_noting(self, path: Path | str, train: bool = False, rng=None,
                            name: str | None = None) -> tuple[np.ndarray, Sampling | None]:
        """The sampled frames, and the record saying frames were repeated when the video is too short."""
        with open_video(path, self.decoder, name) as reader:
            idx = self.indices(reader.num_frames, train, rng)
            return reader.read(idx), sampling_record(reader.num_frames, idx)

    def from_video(self, path: Path | str) -> np.ndarray:
        return self.video_clip(path)[0]

    def video_clip(self, path: Path | str, name: str | None = None) -> tuple[np.ndarray, Sampling | None]:
        """Evaluation clip of a video file, with the sampling record of a too-short video (else None)."""
        frames, sampling = self.sample_video_noting(path, name=name)
        return self.transform(frames), sampling

    def from_frames(self, frames: np.ndarray, train: bool = False, rng=None) -> np.ndarray:
        """Clip from all decoded frames of a video, ``[N, H, W, 3]`` uint8 RGB."""
        return self.frames_clip(frames, train, rng)[0]

    def frames_clip(self, frames: np.ndarray, train: bool = False, rng=None) -> tuple[np.ndarray, Sampling | None]:
        """:meth:`from_frames` with the sampling record of a too-short frame sequence (else None)."""
        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] < 1:
            raise DataError(f"frames must be a [T, H, W, 3] array with T >= 1, got shape {list(frames.shape)}")
        if frames.dtype != np.uint8:
            raise DataError(f"frames must be uint8 RGB, got {frames.dtype}")
        idx = self.indices(len(frames), train, rng)
        return self.transform(frames[idx], train, rng), sampling_record(len(frames), idx)

    def transform(self, frames: np.ndarray, train: bool = False, rng=None) -> np.ndarray:
        cfg = self.cfg
        h, w = frames.shape[1:3]
        if min(h, w) < 2:
            raise DataError(f"frames of {h}x{w} pixels are too small to scale")
        if max(h, w) > MAX_ASPECT * min(h, w):
            # scaling the short side up would make the long side (and memory) grow without bound
            raise DataError(f"frames of {h}x{w} pixels are too elongated to be video frames "
                            f"(aspect ratio over {MAX_ASPECT}:1)")
        frames = T.scale_short_side(frames, cfg.short_size, cfg.fixed_ratio)
        if train:
            frames = T.random_crop(frames, cfg.target_size, rng or np.random.default_rng())
        else:
            frames = T.center_crop(frames, cfg.target_size)
        return T.normalize_to_tchw(frames, cfg.mean, cfg.std)
