"""What a user builds by hand for "video in, label out" without vslim: PaddleVideo's inference preprocessing.

PaddleVideo's inference helpers (``tools/predict.py``) decode every frame of the file with OpenCV, convert
each to RGB, keep the sampled ones, and transform them one Pillow image at a time: ``Scale`` (short side to
``short_size``, bilinear; the long side ``short_size * 4 / 3`` with ``fixed_ratio``), ``CenterCrop``
(offsets rounded), ``Image2Array`` (stack, to T x C x H x W float) and ``Normalization`` (``/ 255``, then
mean and std). The benchmark's hand-built contender runs this in its client threads and sends the tensor to
the peer runtime; vslim-serve decodes only the sampled frames, server-side.

Written from those documented steps (not PaddleVideo's code); the sizes come from the model's recorded
preprocessing, the frame indices from its sampling (which vslim's own tests hold to PaddleVideo's).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from vslim.data.pipeline import ClipPipeline
from vslim.data.transforms import scaled_size
from vslim.errors import ConfigError, DataError

from .e2e import decode_all_then_sample


def check_handbuilt(pipeline: ClipPipeline) -> None:
    """The hand-built path is PP-TSM's pipeline (one input, segment sampling, scale, centre crop)."""
    if pipeline.recipe is not None:
        raise ConfigError(
            f"the hand-built PaddleVideo pipeline is PP-TSM's; this model's preprocessing is "
            f"{pipeline.recipe.helper}'s: leave out --video for it"
        )


def paddlevideo_clip(path: Path | str, pipeline: ClipPipeline) -> np.ndarray:
    """``[1, T, 3, S, S]`` float32, PaddleVideo's way: every frame decoded, Pillow transforms per frame."""
    cfg = pipeline.cfg
    try:
        sampled = decode_all_then_sample(Path(path), pipeline)  # OpenCV, every frame, RGB
    except ValueError:  # no frame to stack
        raise DataError(f"OpenCV decoded no frame of {path}") from None
    images = []
    for frame in sampled:
        image = Image.fromarray(np.ascontiguousarray(frame), mode="RGB")
        oh, ow = scaled_size(image.height, image.width, cfg.short_size, cfg.fixed_ratio)
        image = image.resize((ow, oh), Image.Resampling.BILINEAR)
        y, x = int(round((oh - cfg.target_size) / 2.0)), int(round((ow - cfg.target_size) / 2.0))
        images.append(image.crop((x, y, x + cfg.target_size, y + cfg.target_size)))
    array = np.stack([np.asarray(im) for im in images]).transpose(0, 3, 1, 2).astype(np.float32)
    mean = np.asarray(cfg.mean, np.float32).reshape(1, 3, 1, 1)
    std = np.asarray(cfg.std, np.float32).reshape(1, 3, 1, 1)
    return ((array / 255.0 - mean) / std)[None]
