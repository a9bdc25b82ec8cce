"""Decoding only the frames a clip needs.

A 10 s clip has ~300 frames but PP-TSM looks at 8. Decoding all of them (as
PaddleVideo's ``VideoDecoder`` does) dominates preprocessing time, so both readers
seek to far-away frames and decode forward only across short gaps.

Two readers give identical RGB frames (FFmpeg decodes and converts in both):

* :class:`PyAVReader` (default when PyAV is installed) indexes the packets once
  (no decoding) and seeks to the key frame right before each target, so a sampled
  frame costs at most one GOP of decoding: 8 frames of a 10 s 320x240 mp4 in ~6 ms.
* :class:`VideoReader` (OpenCV) cannot seek exactly: OpenCV's FFmpeg backend seeks
  16 frames before the target and decodes forward from the key frame before that,
  ~1.7 ms per seek, ~14-20 ms for the same 8 frames. Reading with several captures in
  parallel gained nothing (FFmpeg already decodes on several threads).

Neither reader trusts seeks in containers without an index (MPEG-TS/PS; PyAV also AVI,
whose B-frame timestamps come out in decode order): those are read forward, counting
frames, which is slower but lands on the right frame.
"""
from __future__ import annotations

import bisect
from pathlib import Path

import cv2
import numpy as np

from ..errors import ConfigError, DataError

# Below this gap, decoding forward beats an OpenCV seek (which restarts at a key frame).
SEEK_GAP = 12
# OpenCV's frame seeks are exact only in indexed containers; in MPEG-TS/PS they land on
# the wrong frame (measured), so other files are read forward and reopened to go back.
OPENCV_SEEKABLE_SUFFIXES = {".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi"}
DECODERS = ("auto", "pyav", "opencv")
# Containers whose index gives exact key-frame seeks and presentation-order timestamps.
SEEKABLE_FORMATS = {"mov", "mp4", "matroska", "webm"}


def pyav_available() -> bool:
    try:
        import av  # noqa: F401
    except ImportError:
        return False
    return True


def open_video(path: Path | str, decoder: str = "auto"):
    """A frame reader for ``path``: ``auto`` is PyAV when installed, else OpenCV."""
    if decoder not in DECODERS:
        raise ConfigError(f"unknown video decoder {decoder!r}; use one of {', '.join(DECODERS)}")
    if decoder == "pyav" or (decoder == "auto" and pyav_available()):
        return PyAVReader(path)
    return VideoReader(path)


class _Reader:
    """Both readers are context managers that release their decoder on exit."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class VideoReader(_Reader):
    """Random access to the frames of one video file, RGB ``uint8``."""

    decoder = "opencv"

    def __init__(self, path: Path | str):
        self.path = Path(path)
        if not self.path.is_file():
            raise DataError(f"video {self.path} does not exist")
        self._cap = cv2.VideoCapture(str(self.path))
        if not self._cap.isOpened():
            raise DataError(f"video {self.path} cannot be opened by OpenCV (not a video, or an unsupported codec)")
        self._pos = 0
        self._can_seek = self.path.suffix.lower() in OPENCV_SEEKABLE_SUFFIXES
        count = int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT)) if self._can_seek else 0
        # Without an index the count is estimated from the duration (104 for 120 frames, measured)
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
        self._cap.release()
        self._cap = cv2.VideoCapture(str(self.path))
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
            if self._can_seek and (gap < 0 or gap > SEEK_GAP):
                self._cap.set(cv2.CAP_PROP_POS_FRAMES, target)
                self._pos = target
            else:
                if gap < 0:
                    self._rewind()
                    gap = target
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


class PyAVReader(_Reader):
    """Random access to the frames of one video file, RGB ``uint8``, by exact key-frame seeks.

    Seeking is trusted only where the container has an index and presentation-order
    timestamps (MP4/MOV, Matroska/WebM), and every seek is checked: it must land between
    the key frame asked for and its target, timestamps must rise, and the target's own
    timestamp must come out. Anything else (AVI with B-frames, MPEG-TS/PS, a damaged
    index) is read from the start in the decoder's output order, counting frames:
    slower, never wrong.
    """

    decoder = "pyav"

    def __init__(self, path: Path | str):
        try:
            import av
        except ImportError as exc:
            raise ConfigError("the pyav decoder needs PyAV: pip install av (or use --decoder opencv)") from exc
        self.path = Path(path)
        if not self.path.is_file():
            raise DataError(f"video {self.path} does not exist")
        self._container = None
        try:
            self._open()
            self.seekable = bool(set(self._container.format.name.split(",")) & SEEKABLE_FORMATS)
            self._index_packets()
        except av.FFmpegError as exc:
            self.close()
            raise DataError(f"video {self.path} cannot be opened (not a video, or an unsupported codec): "
                            f"{exc}") from None
        except BaseException:
            self.close()
            raise
        self.num_frames = len(self._pts)
        # No decoder position yet: the first read seeks (or restarts, in order) by itself,
        # so the container is not reopened here on every clip.
        self._frames = None
        self._last_pts = None

    def _open(self) -> None:
        import av

        try:
            self._container = av.open(str(self.path))
        except ValueError as exc:
            raise DataError(f"video {self.path} cannot be opened: {exc}") from None
        if not self._container.streams.video:
            raise DataError(f"{self.path} holds no video stream")
        self._stream = self._container.streams.video[0]
        # Slice threads only: frame threading delays every frame after a seek by one
        # frame per thread, which costs more than it saves at 8 frames a clip.
        self._stream.thread_type = "SLICE"

    def _index_packets(self) -> None:
        """Presentation timestamps of every frame and of the key frames, from the packets alone."""
        import av

        pts, keys = [], []
        try:
            for packet in self._container.demux(self._stream):
                if packet.pts is None:
                    continue
                pts.append(packet.pts)
                if packet.is_keyframe:
                    keys.append(packet.pts)
        except av.FFmpegError:
            if not keys:
                raise
            self.seekable = False  # damaged past this point: what was indexed is read in order
        if not pts or not keys:
            raise DataError(f"video {self.path} has no decodable frames")
        self._pts, self._keys = sorted(pts), sorted(keys)

    def _restart(self) -> None:
        """Back to the first frame, in decode order (reopening: some formats cannot seek to 0)."""
        self._container.close()
        self._open()
        self._frames = self._container.decode(self._stream)
        self._last_pts = None

    def _seek(self, pts: int) -> None:
        self._container.seek(pts, stream=self._stream, backward=True)
        self._frames = self._container.decode(self._stream)
        self._last_pts = None

    def read(self, indices) -> np.ndarray:
        """Frames at ``indices`` (any order, repeats allowed) as ``[T, H, W, 3]`` RGB."""
        import av

        clamped = [min(max(int(i), 0), self.num_frames - 1) for i in indices]
        wanted = sorted(set(clamped))
        try:
            got = self._read_seeking(wanted) if self.seekable else None
        except av.FFmpegError:
            got = None  # damaged data: the in-order read below keeps the frames before it
        if got is None:
            self.seekable = False  # this file's seeks cannot be trusted; stay in order from now on
            got = self._read_in_order(wanted)
        return np.stack([got[i] for i in clamped])

    def _read_seeking(self, wanted: list[int]) -> dict[int, np.ndarray] | None:
        out = {}
        for index in wanted:
            frame = self._frame_at(index)
            if frame is None:
                return None
            out[index] = frame
        return out

    def _frame_at(self, index: int) -> np.ndarray | None:
        """The frame whose timestamp is the index-th; None when the decoder does not deliver it exactly."""
        target = self._pts[index]
        key = self._keys[max(bisect.bisect_right(self._keys, target) - 1, 0)]
        if self._last_pts is None or not key <= self._last_pts < target:
            self._seek(key)  # behind us, or a key frame lies between: restart there
        for frame in self._frames:
            if frame.pts is None or (self._last_pts is not None and frame.pts <= self._last_pts):
                return None  # timestamps missing or not rising: cannot place frames by them
            first = self._last_pts is None
            self._last_pts = frame.pts
            if frame.pts == target:
                return frame.to_ndarray(format="rgb24")
            if frame.pts > target:
                return None  # the seek overshot (first) or the target never came out
            if first and frame.pts < key:
                return None  # landed before the key frame asked for: the index is not what it says
        return None

    def _read_in_order(self, wanted: list[int]) -> dict[int, np.ndarray]:
        """Decode from the start, counting frames in presentation order (the decoder's output order).

        Damaged data ends the video where it starts, as a cut file would: the frames
        before it are used and later indices clamp to the last good frame, like OpenCV.
        """
        import av

        out, last, want = {}, None, set(wanted)
        try:
            self._restart()
            for count, frame in enumerate(self._frames):
                if count in want:
                    out[count] = frame.to_ndarray(format="rgb24")
                last = frame
                if count >= wanted[-1]:
                    break
        except av.FFmpegError as exc:
            if last is None:
                raise DataError(f"video {self.path} cannot be decoded: {exc}") from None
        if last is None:
            raise DataError(f"video {self.path} has no decodable frames")
        tail = last.to_ndarray(format="rgb24")  # fewer frames than the packets said: clamp
        self._last_pts = None
        self._frames = None
        return {i: out.get(i, tail) for i in wanted}

    def close(self) -> None:
        if self._container is not None:
            self._container.close()


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
