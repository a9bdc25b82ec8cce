"""Clips from what clients post: a whole video file, or decoded frames.

Shared by Paddle Serving's video endpoints and the v2 video model, so both
decode, sample and refuse input the same way. Decoding runs in a worker thread
(it is CPU work, seconds for a long video), never on the event loop.
"""
from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

import numpy as np

from vslim.data.pipeline import ClipPipeline
from vslim.errors import DataError

from .errors import RequestError


def clip_from_frames(pipeline: ClipPipeline, frames: np.ndarray) -> np.ndarray:
    """``[T, H, W, 3]`` uint8 RGB frames -> one model input clip."""
    try:
        return pipeline.from_frames(frames)
    except DataError as exc:
        raise RequestError(str(exc)) from exc


def clip_from_video_bytes(pipeline: ClipPipeline, body: bytes, what: str = "the posted video") -> np.ndarray:
    """A video file's bytes -> one model input clip (the decoders read files, so it lands in a temp file)."""
    if not body:
        raise RequestError(f"{what} is empty: send the video file's bytes")
    with tempfile.NamedTemporaryFile(suffix=".video") as tmp:
        Path(tmp.name).write_bytes(body)
        try:
            return pipeline.from_video(tmp.name)
        except DataError as exc:
            raise RequestError(f"{what} cannot be decoded: {exc}".replace(tmp.name, "body")) from exc


async def clips_from_videos(pipeline: ClipPipeline, videos: list[bytes]) -> list[np.ndarray]:
    """Decode several posted videos concurrently, off the event loop."""
    names = [f"video {i}" if len(videos) > 1 else "the posted video" for i in range(len(videos))]
    return list(await asyncio.gather(*(asyncio.to_thread(clip_from_video_bytes, pipeline, v, n)
                                       for v, n in zip(videos, names))))
