"""Clips from what clients post: a whole video file, or decoded frames.

Shared by Paddle Serving's video endpoints and the v2 video model, so both
decode, sample and refuse input the same way. Decoding runs in a worker thread
(it is CPU work, seconds for a long video), never on the event loop.

Each clip comes with its sampling record (None unless the video was shorter than
the clip and frames were repeated), which the endpoints put in their answers so a
padded clip is never passed off as a normal one.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
from pathlib import Path

import numpy as np

from vslim.data.pipeline import ClipPipeline
from vslim.data.sampling import Sampling
from vslim.errors import DataError

from .errors import RequestError

Clip = tuple[np.ndarray, Sampling | None]
log = logging.getLogger("vslim.serving")


def _noted(clip: Clip, what: str) -> Clip:
    if clip[1] is not None:
        log.warning("%s: %s", what, clip[1].note)
    return clip


def clip_from_frames(pipeline: ClipPipeline, frames: np.ndarray, what: str = "the posted frames") -> Clip:
    """``[T, H, W, 3]`` uint8 RGB frames -> one model input clip and its sampling record."""
    try:
        return _noted(pipeline.frames_clip(frames), what)
    except DataError as exc:
        raise RequestError(str(exc)) from exc


def clip_from_video_bytes(pipeline: ClipPipeline, body: bytes, what: str = "the posted video") -> Clip:
    """A video file's bytes -> one model input clip and its sampling record.

    The decoders read files, so the bytes land in a temp file; errors call it ``what``
    ("the posted video is a still image (PNG), not a video; ..."), never by the temp name.
    """
    if not body:
        raise RequestError(f"{what} is empty: send the video file's bytes")
    with tempfile.NamedTemporaryFile(suffix=".video") as tmp:
        Path(tmp.name).write_bytes(body)
        try:
            return _noted(pipeline.video_clip(tmp.name, name=what), what)
        except DataError as exc:
            raise RequestError(str(exc).replace(tmp.name, what)) from exc


async def clips_from_videos(pipeline: ClipPipeline, videos: list[bytes]) -> list[Clip]:
    """Decode several posted videos concurrently, off the event loop."""
    names = [f"video {i}" if len(videos) > 1 else "the posted video" for i in range(len(videos))]
    return list(
        await asyncio.gather(*(asyncio.to_thread(clip_from_video_bytes, pipeline, v, n) for v, n in zip(videos, names)))
    )
