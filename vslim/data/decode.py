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

FFmpeg opens a PNG or JPEG as a one-frame "video", so a still image would be classified
with full confidence; both readers refuse what is not a video (still images by their
signature, empty files, text) before decoding, and put FFmpeg's errors in plain words.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from ..errors import ConfigError, DataError

if TYPE_CHECKING:
    from av.container import InputContainer
    from av.video.frame import VideoFrame

# Below this gap, decoding forward beats an OpenCV seek (which restarts at a key frame).
SEEK_GAP = 12
# OpenCV's frame seeks are exact only in indexed containers; in MPEG-TS/PS they land on
# the wrong frame (measured), so other files are read forward and reopened to go back.
OPENCV_SEEKABLE_SUFFIXES = {".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi"}
DECODERS = ("auto", "pyav", "opencv")
# Containers whose index gives exact key-frame seeks and presentation-order timestamps.
SEEKABLE_FORMATS = {"mov", "mp4", "matroska", "webm"}

# Signatures of single-picture formats: FFmpeg would read each as a one-frame video.
STILL_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)
# Image formats that may hold an animation: a still image only when they hold one frame.
ANIMATION_SIGNATURES = ((b"GIF87a", "GIF"), (b"GIF89a", "GIF"))
MJPEG_SUFFIXES = {".mjpeg", ".mjpg"}  # raw Motion-JPEG streams start like a JPEG picture
HEAD_BYTES = 4096


def image_signature(head: bytes, suffix: str = "") -> tuple[str, bool] | None:
    """``(format, may_be_animated)`` when ``head`` starts like an image file, else None."""
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP", b"ANIM" in head
    if head.startswith(b"\x89PNG") and b"acTL" in head:  # APNG: its animation control chunk precedes the pixels
        return "PNG", True
    if head.startswith(b"\xff\xd8\xff") and suffix.lower() in MJPEG_SUFFIXES:
        return "JPEG", True
    if head[:2] == b"BM" and head[6:10] == b"\x00\x00\x00\x00":  # "BM", file size, two zero reserved fields
        return "BMP", False
    for magic, kind in STILL_SIGNATURES:
        if head.startswith(magic):
            return kind, False
    for magic, kind in ANIMATION_SIGNATURES:
        if head.startswith(magic):
            return kind, True
    return None


def text_start(head: bytes) -> str | None:
    """The first line of ``head`` when the file is plain text (no video container is), else None."""
    if not head or b"\x00" in head:
        return None
    text = head.decode("utf-8", errors="ignore")
    if len(text.encode()) < 0.95 * len(head):  # mostly not UTF-8 at all
        return None
    if not text or sum(c.isprintable() or c in "\r\n\t" for c in text) < 0.95 * len(text):
        return None
    first = text.strip().splitlines()[0] if text.strip() else ""
    return first[:40] + ("..." if len(first) > 40 else "")


def still_image_error(name: str, fmt: str) -> DataError:
    return DataError(f"{name} is a still image ({fmt}), not a video; give a video file or a folder of frames")


def ffmpeg_reason(exc: BaseException) -> str:
    """FFmpeg's error as the user's situation: what the file is, then FFmpeg's own words in brackets."""
    import av.error as averr

    words = getattr(exc, "strerror", None) or str(exc)
    if isinstance(exc, (averr.InvalidDataError, averr.DemuxerNotFoundError)):
        plain = "the file is not a video container FFmpeg can read"
    elif isinstance(exc, averr.EOFError):
        plain = "the file ends before its video data (cut short?)"
    elif isinstance(exc, averr.DecoderNotFoundError):
        plain = "its video codec is not one this FFmpeg build can decode"
    elif isinstance(exc, averr.PermissionError):
        plain = "the file cannot be read (check its permissions)"
    elif isinstance(exc, averr.MemoryError):
        plain = "FFmpeg ran out of memory reading it"
    else:
        plain = "FFmpeg could not read it"
    return f"{plain} ({words})"


def _check_video_file(path: Path, name: str) -> bytes:
    """Refuse what is surely not a video before a decoder sees it; the file's first bytes."""
    if not path.exists():
        raise DataError(f"video {name} does not exist")
    if not path.is_file():
        raise DataError(
            f"video {name} is a folder, not a file; give a video file (a folder of frames is "
            "read as frames, not through a video decoder)"
        )
    try:
        with path.open("rb") as fh:
            head = fh.read(HEAD_BYTES)
    except OSError as exc:
        raise DataError(f"video {name} cannot be read ({exc.strerror or exc}); check its permissions") from None
    if not head:
        raise DataError(f"{name} is empty (0 bytes), not a video; give a video file")
    sig = image_signature(head, path.suffix)
    if sig and not sig[1]:
        raise still_image_error(name, sig[0])
    return head


def _after_open(name: str, head: bytes, suffix: str, num_frames: int) -> None:
    """Refuse an animated-image format (GIF, ...) holding one picture, and a video with no frames."""
    sig = image_signature(head, suffix)
    if sig and num_frames <= 1:
        raise still_image_error(name, sig[0])
    if num_frames < 1:
        raise DataError(f"{name} holds no video frames (its video stream is empty); give a video with frames")


def _unreadable(name: str, head: bytes, reason: str) -> DataError:
    """``reason`` ends with FFmpeg's own words in brackets, kept when the file turns out to be text."""
    text = text_start(head)
    words = reason[reason.rfind(" (") :] if reason.endswith(")") else ""
    if text is not None:
        reason = f"it is a text file (it starts with {text!r}), not a video{words}"
    elif head[4:8] == b"ftyp" and reason.startswith("the file is not a video container"):
        reason = (
            f"it starts like an MP4/MOV file but its index cannot be read: cut short, or still being written?{words}"
        )
    return DataError(f"{name} cannot be decoded: {reason}")


def pyav_available() -> bool:
    try:
        import av  # noqa: F401
    except ImportError:
        return False
    return True


def open_video(path: Path | str, decoder: str = "auto", name: str | None = None):
    """A frame reader for ``path``: ``auto`` is PyAV when installed, else OpenCV.

    ``name`` is how errors call the file (default: the path), e.g. "the posted video".
    """
    if decoder not in DECODERS:
        raise ConfigError(f"unknown video decoder {decoder!r}; use one of {', '.join(DECODERS)}")
    if decoder == "pyav" or (decoder == "auto" and pyav_available()):
        return PyAVReader(path, name)
    return VideoReader(path, name)


def probe_video(path: Path | str, decoder: str = "auto", name: str | None = None) -> int:
    """The frame count of a video that opens, or the DataError a clip from it would meet."""
    with open_video(path, decoder, name) as reader:
        return reader.num_frames


def _opencv_failure(path: Path, name: str, head: bytes) -> DataError:
    """OpenCV says only "not opened"; PyAV (when installed) can say why."""
    reason = "OpenCV cannot open it (not a video, an unsupported codec, or a video with no frames)"
    if pyav_available():
        import av

        try:
            with av.open(str(path)) as container:
                if not container.streams.video:
                    return _no_video_stream(name, container)
        except av.FFmpegError as exc:
            reason = ffmpeg_reason(exc)
        except ValueError as exc:  # e.g. UnicodeDecodeError on damaged metadata, as in the PyAV reader
            reason = f"its container cannot be read ({type(exc).__name__}: {exc})"
    return _unreadable(name, head, reason)


def _no_video_stream(name: str, container) -> DataError:
    kinds = sorted({s.type for s in container.streams})
    found = f"no video stream, only {' and '.join(kinds)}" if kinds else "no streams at all"
    return DataError(f"{name} holds no video frames: it has {found}; give a video file")


class _Reader:
    """Both readers are context managers that release their decoder on exit."""

    fps: float | None = None  # the stream's average frame rate (samplers that span seconds need it)

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class VideoReader(_Reader):
    """Random access to the frames of one video file, RGB ``uint8``."""

    decoder = "opencv"

    def __init__(self, path: Path | str, name: str | None = None):
        self.path = Path(path)
        self.name = name or str(path)
        head = _check_video_file(self.path, self.name)
        self._cap = cv2.VideoCapture(str(self.path))
        if not self._cap.isOpened():
            raise _opencv_failure(self.path, self.name, head)
        self._pos = 0
        self._can_seek = self.path.suffix.lower() in OPENCV_SEEKABLE_SUFFIXES
        count = int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT)) if self._can_seek else 0
        # Without an index the count is estimated from the duration (104 for 120 frames, measured)
        self.num_frames = count if count > 0 else self._count_by_decoding()
        self.fps = float(self._cap.get(cv2.CAP_PROP_FPS)) or None
        try:
            _after_open(self.name, head, self.path.suffix, self.num_frames)
        except DataError:
            self.close()
            raise

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
            raise DataError(
                f"{self.name} cannot be decoded: OpenCV decoded no frame of it (damaged video "
                "data, or an unsupported codec)"
            )
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

    def __init__(self, path: Path | str, name: str | None = None):
        try:
            import av
        except ImportError as exc:
            raise ConfigError("the pyav decoder needs PyAV: pip install av (or use --decoder opencv)") from exc
        self.path = Path(path)
        self.name = name or str(path)
        head = _check_video_file(self.path, self.name)
        self._container: InputContainer | None = None  # None until _open() succeeds
        try:
            self._open()
            self._refuse_image_format()
            self.seekable = bool(set(self._opened.format.name.split(",")) & SEEKABLE_FORMATS)
            self._index_packets()
            _after_open(self.name, head, self.path.suffix, len(self._pts))
        except av.FFmpegError as exc:
            self.close()
            raise _unreadable(self.name, head, ffmpeg_reason(exc)) from None
        except BaseException:
            self.close()
            raise
        self.num_frames = len(self._pts)
        rate = self._stream.average_rate
        self.fps = float(rate) if rate else None
        # No decoder position yet: the first read seeks (or restarts, in order) by itself,
        # so the container is not reopened here on every clip.
        self._frames: Iterator[VideoFrame] | None = None
        self._last_pts: int | None = None

    @property
    def _opened(self) -> InputContainer:
        """The container: ``__init__`` opens it before anything else reads it."""
        assert self._container is not None
        return self._container

    def _open(self) -> None:
        import av

        try:
            self._container = container = av.open(str(self.path))
        except av.FFmpegError:
            raise
        except ValueError as exc:
            raise DataError(f"{self.name} cannot be opened: {exc}") from None
        if not container.streams.video:
            raise _no_video_stream(self.name, container)
        self._stream = container.streams.video[0]
        # Slice threads only: frame threading delays every frame after a seek by one
        # frame per thread, which costs more than it saves at 8 frames a clip.
        self._stream.thread_type = "SLICE"

    def _refuse_image_format(self) -> None:
        """An image FFmpeg recognised by its contents (formats the signatures above do not list)."""
        fmt = self._opened.format.name
        if fmt.endswith("_pipe") or fmt == "image2":
            codec = self._stream.codec_context.name
            raise still_image_error(self.name, fmt.removesuffix("_pipe").upper() if fmt != "image2" else codec.upper())

    def _index_packets(self) -> None:
        """Presentation timestamps of every frame and of the key frames, from the packets alone."""
        import av

        pts, keys = [], []
        try:
            for packet in self._opened.demux(self._stream):
                if packet.pts is None:
                    continue
                pts.append(packet.pts)
                if packet.is_keyframe:
                    keys.append(packet.pts)
        except av.FFmpegError:
            if not keys:
                raise
            self.seekable = False  # damaged past this point: what was indexed is read in order
        if not pts:
            raise DataError(f"{self.name} holds no video frames (its video stream is empty); give a video with frames")
        if not keys:
            raise DataError(
                f"{self.name} cannot be decoded: its video stream has no key frame to start "
                "decoding from (damaged or cut from a longer stream)"
            )
        self._pts, self._keys = sorted(pts), sorted(keys)

    def _restart(self) -> Iterator[VideoFrame]:
        """Back to the first frame, in decode order (reopening: some formats cannot seek to 0)."""
        self._opened.close()
        self._open()
        self._frames = frames = self._opened.decode(self._stream)
        self._last_pts = None
        return frames

    def _seek(self, pts: int) -> Iterator[VideoFrame]:
        self._opened.seek(pts, stream=self._stream, backward=True)
        self._frames = frames = self._opened.decode(self._stream)
        self._last_pts = None
        return frames

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
        frames = self._frames
        if frames is None or self._last_pts is None or not key <= self._last_pts < target:
            frames = self._seek(key)  # behind us, or a key frame lies between: restart there
        for frame in frames:
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
            for count, frame in enumerate(self._restart()):
                if count in want:
                    out[count] = frame.to_ndarray(format="rgb24")
                last = frame
                if count >= wanted[-1]:
                    break
        except av.FFmpegError as exc:
            if last is None:
                raise DataError(f"{self.name} cannot be decoded: {ffmpeg_reason(exc)}") from None
        if last is None:
            raise DataError(f"{self.name} cannot be decoded: FFmpeg decoded no frame of it (damaged video data)")
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
