"""The clip pipeline: source -> sampled frames -> the model's input(s).

vslim's own models (trained by vslim) use the PP-TSM pipeline below, written for speed
(OpenCV resize, one pass from uint8 to normalised float). A model exported by PaddleVideo
carries a :class:`~vslim.data.recipes.Recipe` instead: its inference helper's own operations,
so its inputs are the arrays PaddleVideo would feed. A model whose preprocessing is unknown
(no config, and shapes that do not prove it) gets a pipeline that refuses with the reason.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..config import PreprocessConfig
from ..errors import DataError
from . import transforms as T
from .decode import open_video, read_frame_files
from .lists import VideoEntry
from .recipes import Recipe
from .sampling import Sampling, sampling_record, segment_indices

MAX_ASPECT = 16  # widest frame shape accepted (panoramic video is about 4:1)


class ClipPipeline:
    """Turns a video, a frame folder or an in-memory frame array into one model input clip.

    Evaluation takes the centre frame of each segment and a centre crop; training
    takes a random frame per segment and a random crop. No flips: in motion data a
    mirrored clip is a different class.
    """

    def __init__(self, cfg: PreprocessConfig, decoder: str = "auto", recipe: Recipe | None = None, unknown: str = ""):
        self.cfg = cfg.validate()
        self.decoder = decoder  # "auto" (PyAV when installed), "pyav" or "opencv": same frames, PyAV faster
        self.recipe = recipe
        self.unknown = unknown  # why this model's preprocessing is not known (then every clip is refused)

    @classmethod
    def for_model(cls, meta, decoder: str = "auto") -> ClipPipeline:
        """The pipeline a model folder's metadata describes (its PaddleVideo recipe when it has one)."""
        return cls(meta.preprocess, decoder, meta.recipe, meta.preprocess_unknown or "")

    @property
    def inputs(self) -> int:
        return len(self.recipe.input_names) if self.recipe else 1

    def _check_known(self, train: bool = False) -> None:
        if self.unknown:
            raise DataError(f"this model's preprocessing is not known: {self.unknown}")
        if train and self.recipe is not None:
            raise DataError(
                f"training and calibration clips of a PaddleVideo {self.recipe.helper} model are made "
                "by PaddleVideo's own pipeline; vslim trains only its zoo's models"
            )

    def indices(self, num_frames: int, train: bool = False, rng=None, fps: float | None = None) -> np.ndarray:
        self._check_known(train)
        if self.recipe is not None:
            return self.recipe.indices(num_frames, fps)
        return segment_indices(num_frames, self.cfg.num_seg, self.cfg.seg_len, train, rng)

    def load(self, entry: VideoEntry, train: bool = False, rng=None) -> np.ndarray:
        """Decode and transform the clip of one list entry; errors name the list line."""
        try:
            if entry.num_frames is not None:  # entry.is_frames
                idx = self.indices(entry.num_frames, train, rng)
                frames = read_frame_files(entry.path, idx, entry.suffix, entry.num_frames)
            else:
                frames = self.sample_video(entry.path, train, rng)
        except DataError as exc:
            raise DataError(f"{entry.where}: {exc}" if entry.where else str(exc)) from None
        return self.transform(frames, train, rng)

    def sample_video(self, path: Path | str, train: bool = False, rng=None) -> np.ndarray:
        return self.sample_video_noting(path, train, rng)[0]

    def sample_video_noting(
        self, path: Path | str, train: bool = False, rng=None, name: str | None = None
    ) -> tuple[np.ndarray, Sampling | None]:
        """The sampled frames, and the record saying frames were repeated when the video is too short."""
        self._check_known(train)
        with open_video(path, self.decoder, name) as reader:
            idx = self.indices(reader.num_frames, train, rng, fps=reader.fps)
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

    def transform(self, frames: np.ndarray, train: bool = False, rng=None):
        """The model input ``[T, 3, S, S]`` (or the recipe's layout); a tuple of arrays for a two-input model."""
        self._check_known(train)
        cfg = self.cfg
        h, w = frames.shape[1:3]
        if min(h, w) < 2:
            raise DataError(f"frames of {h}x{w} pixels are too small to scale")
        if max(h, w) > MAX_ASPECT * min(h, w):
            # scaling the short side up would make the long side (and memory) grow without bound
            raise DataError(
                f"frames of {h}x{w} pixels are too elongated to be video frames (aspect ratio over {MAX_ASPECT}:1)"
            )
        if self.recipe is not None:
            inputs = self.recipe.transform(frames)
            return inputs[0] if len(inputs) == 1 else tuple(inputs)
        frames = T.scale_short_side(frames, cfg.short_size, cfg.fixed_ratio)
        if train:
            frames = T.random_crop(frames, cfg.target_size, rng or np.random.default_rng())
        else:
            frames = T.center_crop(frames, cfg.target_size)
        return T.normalize_to_tchw(frames, cfg.mean, cfg.std)


def as_inputs(clip) -> tuple[np.ndarray, ...]:
    """A pipeline's clip as one array per model input."""
    return clip if isinstance(clip, tuple) else (clip,)
