"""PaddleVideo's inference preprocessing, family by family, reproduced operation for operation.

A user's model was exported by PaddleVideo, and its answers are those of PaddleVideo's inference
helper (``tools/utils.py``: ``INFERENCE.name`` in the model's config picks it). Each helper is a
fixed chain of pipeline ops with a few parameters from the config's ``INFERENCE`` section; a
:class:`Recipe` here is that chain, written with the same arithmetic so the model's inputs are
the same arrays (docs/models.md lists the facts per family):

* ``ppTSM_Inference_helper`` (PP-TSM, PP-TSMv2, TSM, MoViNet): centre frame of each segment,
  ``Scale`` with Pillow's bilinear filter (fixed 4:3 ratio), centre crop, ``(x/255 - mean)/std``,
  ``[T, 3, S, S]``.
* ``ppTSN_Inference_helper`` (TSN, PP-TSN): TSM-style segment centres, OpenCV's bilinear
  ``Scale``, ``TenCrop`` (four corners and the centre, each also mirrored: ``[seg*10, 3, S, S]``).
* ``TimeSformer_Inference_helper``: frames spread evenly over the first ``256/30 s`` (``linspace``),
  normalised, short side resized in float (Paddle's bilinear kernel, reproduced to the bit), ``UniformCrop``'s three crops
  stacked along time: ``[3, T*3, S, S]``.
* ``VideoSwin_Inference_helper``: ``seg_len`` frames ``frame_interval`` apart around the
  middle, OpenCV resize keeping the ratio, centre crop, ``(x - mean)/std`` on 0-255: ``[3, T, S, S]``.
* ``SlowFast_Inference_helper``: ``num_frames`` frames over ``num_frames*rate/30 s``, Pillow resize
  of the short side, a crop, the slow pathway every ``alpha``-th frame: two inputs.

Decoding is vslim's own (exact key-frame seeks, only the frames asked for); the decoded frames are
the ones PaddleVideo's decoders give, so only the indices and the arithmetic matter here.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import cv2
import numpy as np

from ..errors import ConfigError, DataError

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
KINETICS_MEAN = [0.45, 0.45, 0.45]
KINETICS_STD = [0.225, 0.225, 0.225]
DEFAULT_FPS = 30.0  # frames handed over as an array carry no rate: PaddleVideo's target_fps


@dataclass
class Recipe:
    """One PaddleVideo inference helper and its parameters: what turns a video into the model's inputs.

    Stored in ``vslim.json`` as ``recipe``; ``source`` says where it came from (a PaddleVideo config,
    or the input shapes with ``assumed`` naming every default taken).
    """

    helper: str
    input_names: list[str]
    num_seg: int = 8
    seg_len: int = 1
    short_size: int = 256
    target_size: int = 224
    mean: list[float] = field(default_factory=lambda: list(IMAGENET_MEAN))
    std: list[float] = field(default_factory=lambda: list(IMAGENET_STD))
    frame_interval: int = 2  # VideoSwin
    num_frames: int = 32  # SlowFast
    sampling_rate: int = 2  # SlowFast
    alpha: int = 8  # SlowFast
    source: str = ""
    assumed: list[str] = field(default_factory=list)
    # OpenCV's bilinear where the helper resizes with Pillow: faster transforms (9x on 1080p), inputs up to one
    # grey level from PaddleVideo's when enlarging, more at sharp edges when shrinking, where Pillow widens
    # its filter (docs/models.md, speed)
    fast_resize: bool = False

    def to_dict(self) -> dict:
        return asdict(self)

    def validate(self, where: str = "recipe") -> Recipe:
        if self.helper not in HELPERS:
            raise ConfigError(
                f"{where}: PaddleVideo inference helper {self.helper!r} is not supported; vslim runs "
                f"the recognition helpers {', '.join(HELPERS)}"
            )
        for name in (
            "num_seg",
            "seg_len",
            "short_size",
            "target_size",
            "frame_interval",
            "num_frames",
            "sampling_rate",
            "alpha",
        ):
            if getattr(self, name) < 1:
                raise ConfigError(f"{where}: {name} must be >= 1, got {getattr(self, name)}")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ConfigError(f"{where}: mean and std need 3 values each, std > 0")
        if len(self.input_names) != HELPERS[self.helper].inputs:
            raise ConfigError(
                f"{where}: {self.helper} feeds {HELPERS[self.helper].inputs} input(s), the model "
                f"has {len(self.input_names)}: {self.input_names}"
            )
        return self

    @property
    def family(self) -> Helper:
        return HELPERS[self.helper]

    def input_shapes(self) -> list[list[int]]:
        """Each input's shape with a dynamic batch, as PaddleVideo's ``export_model.py`` declares it."""
        return self.family.shapes(self)

    def indices(self, num_frames: int, fps: float | None = None) -> np.ndarray:
        """0-based indices of the frames to decode, in the order the helper uses them (repeats allowed)."""
        if num_frames < 1:
            raise DataError(f"a clip needs at least one frame, got {num_frames}")
        return np.asarray(self.family.indices(self, num_frames, fps or DEFAULT_FPS), dtype=np.int64)

    def transform(self, frames: np.ndarray) -> list[np.ndarray]:
        """The model's inputs (no batch dimension) from the decoded ``[T, H, W, 3]`` uint8 RGB frames."""
        return self.family.transform(self, frames)

    def describe(self) -> str:
        return self.family.describe(self)


# --------------------------------------------------------------------------- the operations


def _scale_size(
    w: int, h: int, short: int, fixed_ratio: bool, keep_ratio: bool | None, do_round: bool
) -> tuple[int, int]:
    """(ow, oh) of PaddleVideo's ``Scale``, branch for branch."""
    if w <= h:
        ow = short
        if fixed_ratio:
            oh = int(short * 4.0 / 3.0)
        elif keep_ratio is False:
            oh = short
        else:
            factor = short / w
            oh = int(h * float(factor) + 0.5) if do_round else int(h * short / w)
            ow = int(w * float(factor) + 0.5) if do_round else short
    else:
        oh = short
        if fixed_ratio:
            ow = int(short * 4.0 / 3.0)
        elif keep_ratio is False:
            ow = short
        else:
            factor = short / h
            oh = int(h * float(factor) + 0.5) if do_round else short
            ow = int(w * float(factor) + 0.5) if do_round else int(w * short / h)
    return ow, oh


def scale(
    frames: np.ndarray,
    short: int,
    fixed_ratio: bool = True,
    keep_ratio: bool | None = None,
    do_round: bool = False,
    backend: str = "pillow",
) -> list[np.ndarray]:
    """``Scale``: Pillow's BILINEAR (its filter widens when shrinking) or OpenCV's INTER_LINEAR on uint8."""
    from PIL import Image

    out = []
    for frame in frames:
        h, w = frame.shape[:2]
        if (w <= h and w == short) or (h <= w and h == short):
            out.append(frame)
            continue
        ow, oh = _scale_size(w, h, short, fixed_ratio, keep_ratio, do_round)
        if backend == "pillow":
            out.append(np.asarray(Image.fromarray(frame).resize((ow, oh), Image.Resampling.BILINEAR)))
        else:
            out.append(cv2.resize(frame, (ow, oh), interpolation=cv2.INTER_LINEAR))
    return out


def center_offsets(h: int, w: int, size: int, do_round: bool = True) -> tuple[int, int]:
    """``CenterCrop``'s top-left corner (Python's round: halves go to the even number)."""
    x = int(round((w - size) / 2.0)) if do_round else (w - size) // 2
    y = int(round((h - size) / 2.0)) if do_round else (h - size) // 2
    return y, x


def _check_crop(h: int, w: int, size: int) -> None:
    if h < size or w < size:
        raise DataError(f"frames of {w}x{h} pixels after scaling are smaller than the {size}x{size} crop")


def center_crop(frames: list[np.ndarray], size: int) -> list[np.ndarray]:
    h, w = frames[0].shape[:2]
    _check_crop(h, w, size)
    y, x = center_offsets(h, w, size)
    return [f[y : y + size, x : x + size] for f in frames]


def ten_crop(frames: list[np.ndarray], size: int) -> list[np.ndarray]:
    """``TenCrop``: for each of 4 corners and the centre, every frame, then every frame mirrored."""
    h, w = frames[0].shape[:2]
    _check_crop(h, w, size)
    ws, hs = (w - size) // 4, (h - size) // 4
    out = []
    for x, y in ((0, 0), (4 * ws, 0), (0, 4 * hs), (4 * ws, 4 * hs), (2 * ws, 2 * hs)):
        crops = [f[y : y + size, x : x + size] for f in frames]
        out.extend(crops)
        out.extend(c[:, ::-1] for c in crops)
    return out


def uniform_offsets(h: int, w: int, size: int) -> list[tuple[int, int]]:
    """``UniformCrop``'s three (x, y) corners along the long side; the short side must equal the crop."""
    if size == h:
        step = (w - size) // 2
        return [(0, 0), (step * 2, 0), (step, 0)]
    if size == w:
        step = (h - size) // 2
        return [(0, 0), (0, step * 2), (0, step)]
    raise DataError(f"UniformCrop needs one side of the {w}x{h} frames equal to the crop size {size}")


def normalize_tchw(frames: list[np.ndarray], mean, std) -> np.ndarray:
    """``Image2Array`` (tchw) then ``Normalization``: float32 ``x / 255``, minus mean, over std, as written."""
    x = np.stack(frames).astype(np.float32).transpose(0, 3, 1, 2)
    x = x / 255.0
    x -= np.asarray(mean, np.float32).reshape(3, 1, 1)
    x /= np.asarray(std, np.float32).reshape(3, 1, 1)
    return np.ascontiguousarray(x)


def _taps(n_in: int, n_out: int):
    """Source rows (or columns) and weights of Paddle's CPU bilinear kernel, in its float32 arithmetic."""
    f32 = np.float32
    ratio = f32(n_in) / f32(n_out) if n_out > 1 else f32(0)
    src = (ratio * (np.arange(n_out).astype(f32) + f32(0.5)) - f32(0.5)).astype(f32)
    lo = np.maximum(np.trunc(src).astype(np.int64), 0)
    hi = np.minimum(lo + 1, n_in - 1)
    d1: np.ndarray = (np.maximum(src, f32(0)) - lo.astype(f32)).astype(f32)
    return lo, hi, d1, (f32(1) - d1).astype(f32)


def resize_float_chw(x: np.ndarray, oh: int, ow: int) -> np.ndarray:
    """Bilinear resize of ``[C, T, H, W]`` float32 exactly as ``paddle.nn.functional.interpolate(mode="bilinear",
    align_corners=False)`` computes it on the CPU: half-pixel taps in float32 and its order of products and
    sums (OpenCV's float resize differs by up to 1e-4, which a TimeSformer's output can amplify)."""
    yn, ys, dn, ds = _taps(x.shape[2], oh)
    xw, xe, dw, de = _taps(x.shape[3], ow)
    north, south = x[:, :, yn], x[:, :, ys]
    a, c = north[..., xw], north[..., xe]
    b, d = south[..., xw], south[..., xe]
    DS, DN, DE, DW = ds[:, None], dn[:, None], de[None, :], dw[None, :]
    return ((((a * DS) * DE + (b * DN) * DE) + (c * DS) * DW) + (d * DN) * DW).astype(np.float32)


# --------------------------------------------------------------------------- the helpers


class Helper:
    """One PaddleVideo inference helper: its frame indices, transform and input shapes."""

    name = ""
    inputs = 1
    output_kind = "logits"  # the helper applies softmax (Base_Inference_helper.postprocess)
    families = ""

    def indices(self, r: Recipe, n: int, fps: float) -> list[int]:
        raise NotImplementedError

    def transform(self, r: Recipe, frames: np.ndarray) -> list[np.ndarray]:
        raise NotImplementedError

    def shapes(self, r: Recipe) -> list[list[int]]:
        raise NotImplementedError

    def describe(self, r: Recipe) -> str:
        raise NotImplementedError


def segment_centres(n: int, num_seg: int, seg_len: int) -> list[int]:
    """``Sampler(valid_mode=True)``: the centre frame(s) of each of ``num_seg`` segments."""
    average = int(n / num_seg)
    out: list[int] = []
    for i in range(num_seg):
        if average >= seg_len:
            start = (average - 1) // 2 + i * average
        elif average >= 1:
            start = i * average
        else:
            start = i
        out.extend(j % n for j in range(start, start + seg_len))
    return out


class PPTSM(Helper):
    name = "ppTSM_Inference_helper"
    families = "PP-TSM, PP-TSMv2, TSM, MoViNet"

    def indices(self, r, n, fps):
        return segment_centres(n, r.num_seg, r.seg_len)

    def transform(self, r, frames):
        frames = center_crop(scale(frames, r.short_size, backend="cv2" if r.fast_resize else "pillow"), r.target_size)
        return [normalize_tchw(frames, r.mean, r.std)]

    def shapes(self, r):
        return [[-1, r.num_seg * r.seg_len, 3, r.target_size, r.target_size]]

    def describe(self, r):
        return (
            f"{r.num_seg} segment centres x {r.seg_len}, short side {r.short_size} (Pillow bilinear, 4:3), "
            f"centre crop {r.target_size}"
        )


class PPTSN(Helper):
    name = "ppTSN_Inference_helper"
    families = "TSN, PP-TSN"

    def indices(self, r, n, fps):
        if n > r.num_seg:  # Sampler(select_left=True): one frame per segment, seg_len unused
            average = n / r.num_seg
            return [int(average / 2.0 + average * x) for x in range(r.num_seg)]
        return [0] * r.num_seg

    def transform(self, r, frames):
        frames = ten_crop(scale(frames, r.short_size, fixed_ratio=True, do_round=True, backend="cv2"), r.target_size)
        return [normalize_tchw(frames, r.mean, r.std)]

    def shapes(self, r):
        return [[-1, r.num_seg * 10, 3, r.target_size, r.target_size]]

    def describe(self, r):
        return (
            f"{r.num_seg} segments x TenCrop {r.target_size} (= {r.num_seg * 10} images), short side "
            f"{r.short_size} (OpenCV bilinear, 4:3)"
        )


class TimeSformer(Helper):
    name = "TimeSformer_Inference_helper"
    families = "TimeSformer, PP-TimeSformer"
    sampling_rate = 32  # VideoDecoder's default; with target_fps 30 the clip spans 32*num_seg/30 seconds

    def indices(self, r, n, fps):
        clip = self.sampling_rate * r.num_seg / 30.0 * fps
        offsets = np.linspace(0, clip - 1, r.num_seg)
        return np.clip(offsets, 0, n - 1).astype(np.int64).tolist()

    def transform(self, r, frames):
        x = frames / 255.0  # float64, as Normalization computes on PyAV's uint8 frames
        x = x - np.asarray(r.mean, np.float32).reshape(1, 1, 1, 3)
        x = x / np.asarray(r.std, np.float32).reshape(1, 1, 1, 3)
        x = np.ascontiguousarray(x.astype(np.float32).transpose(3, 0, 1, 2))  # cthw
        c, t, h, w = x.shape
        size = r.short_size
        if not ((w <= h and w == size) or (h <= w and h == size)):  # JitterScale(short, short)
            nh, nw = size, size
            if w < h:
                nh = int(math.floor((float(h) / w) * size))
            else:
                nw = int(math.floor((float(w) / h) * size))
            x = resize_float_chw(x, nh, nw)
        h, w = x.shape[2:]
        s = r.target_size
        crops = [x[:, :, y : y + s, xo : xo + s] for xo, y in uniform_offsets(h, w, s)]
        return [np.ascontiguousarray(np.concatenate(crops, axis=1))]

    def shapes(self, r):
        return [[-1, 3, r.num_seg * 3, r.target_size, r.target_size]]

    def describe(self, r):
        return (
            f"{r.num_seg} frames evenly over {self.sampling_rate * r.num_seg / 30:.1f} s, short side "
            f"{r.short_size} (float bilinear), UniformCrop {r.target_size} x 3 along time"
        )


class VideoSwin(Helper):
    name = "VideoSwin_Inference_helper"
    families = "VideoSwin"
    output_kind = "probabilities"  # its postprocess applies no softmax: the head has

    def indices(self, r, n, fps):
        span = r.seg_len * r.frame_interval
        average = (n - span + 1) / float(r.num_seg)
        if n > span - 1:
            starts = (np.arange(r.num_seg) * average + average / 2.0).astype(np.int64)
        else:
            starts = np.zeros(r.num_seg, np.int64)
        offsets = starts[:, None] + np.arange(r.seg_len)[None, :] * r.frame_interval
        return np.mod(offsets.reshape(-1), n).tolist()

    def transform(self, r, frames):
        frames = center_crop(
            scale(frames, r.short_size, fixed_ratio=False, keep_ratio=True, do_round=True, backend="cv2"), r.target_size
        )
        mean = np.float64(np.asarray(r.mean, np.float32))
        stdinv = 1 / np.float64(np.asarray(r.std, np.float32))
        x = np.stack(frames).astype(np.float32)  # Normalization(inplace=True): cv2.subtract, cv2.multiply
        x = (x.astype(np.float64) - mean).astype(np.float32)
        x = (x.astype(np.float64) * stdinv).astype(np.float32)
        return [np.ascontiguousarray(x.transpose(3, 0, 1, 2))]

    def shapes(self, r):
        return [[-1, 3, r.num_seg * r.seg_len, r.target_size, r.target_size]]

    def describe(self, r):
        return (
            f"{r.num_seg} x {r.seg_len} frames {r.frame_interval} apart, short side {r.short_size} "
            f"(OpenCV bilinear, ratio kept), centre crop {r.target_size}, mean/std on 0-255"
        )


class SlowFast(Helper):
    name = "SlowFast_Inference_helper"
    families = "SlowFast"
    inputs = 2
    output_kind = "probabilities"  # "done in its head", says its postprocess

    def indices(self, r, n, fps):
        clip = r.num_frames * r.sampling_rate * fps / 30.0  # DecodeSampler, test mode: clip 0 of 1, from the start
        return np.clip(np.linspace(0.0, clip - 1, r.num_frames).astype(np.int64), 0, n - 1).tolist()

    def transform(self, r, frames):
        from PIL import Image

        size = r.short_size
        h, w = frames.shape[1:3]
        if not ((w <= h and w == size) or (h <= w and h == size)):  # JitterScale(size, size), Pillow
            nw, nh = size, size
            if w < h:
                nh = int(math.floor((float(h) / w) * size))
            else:
                nw = int(math.floor((float(w) / h) * size))
            if r.fast_resize:
                frames = np.stack([cv2.resize(f, (nw, nh), interpolation=cv2.INTER_LINEAR) for f in frames])
            else:
                frames = np.stack(
                    [np.asarray(Image.fromarray(f).resize((nw, nh), Image.Resampling.BILINEAR)) for f in frames]
                )
        h, w = frames.shape[1:3]
        s = r.target_size
        _check_crop(h, w, s)
        # MultiCrop as the helper builds it crops at a random offset; vslim takes its test-mode centre
        # (the same pixels whenever the short side equals the crop, as it does at PaddleVideo's defaults)
        y, x = int(math.ceil((h - s) / 2)), int(math.ceil((w - s) / 2))
        fast = frames[:, y : y + s, x : x + s].astype(np.float32)
        fast = fast / 255.0
        fast -= np.asarray(r.mean, np.float32).reshape(1, 1, 1, 3)
        fast /= np.asarray(r.std, np.float32).reshape(1, 1, 1, 3)
        slow_idx = np.linspace(0, len(fast) - 1, len(fast) // r.alpha).astype(np.int64)
        slow = fast[slow_idx]
        return [np.ascontiguousarray(slow.transpose(3, 0, 1, 2)), np.ascontiguousarray(fast.transpose(3, 0, 1, 2))]

    def shapes(self, r):
        s = r.target_size
        return [[-1, 3, r.num_frames // r.alpha, s, s], [-1, 3, r.num_frames, s, s]]

    def describe(self, r):
        return (
            f"{r.num_frames} frames over {r.num_frames * r.sampling_rate / 30:.1f} s, short side "
            f"{r.short_size} (Pillow bilinear), crop {r.target_size}, slow pathway every {r.alpha}th frame"
        )


HELPERS: dict[str, Helper] = {h.name: h for h in (PPTSM(), PPTSN(), TimeSformer(), VideoSwin(), SlowFast())}


# --------------------------------------------------------------------------- where a recipe comes from

# each helper's constructor arguments and defaults (tools/utils.py); `top_k` is the CLI's business
HELPER_DEFAULTS: dict[str, dict[str, Any]] = {
    "ppTSM_Inference_helper": {"num_seg": 8, "seg_len": 1, "short_size": 256, "target_size": 224},
    "ppTSN_Inference_helper": {"num_seg": 25, "seg_len": 1, "short_size": 256, "target_size": 224},
    "TimeSformer_Inference_helper": {
        "num_seg": 8,
        "seg_len": 1,
        "short_size": 224,
        "target_size": 224,
        "mean": KINETICS_MEAN,
        "std": KINETICS_STD,
    },
    "VideoSwin_Inference_helper": {
        "num_seg": 4,
        "seg_len": 32,
        "frame_interval": 2,
        "short_size": 224,
        "target_size": 224,
        "mean": [123.675, 116.28, 103.53],
        "std": [58.395, 57.12, 57.375],
    },
    "SlowFast_Inference_helper": {"num_frames": 32, "sampling_rate": 2, "target_size": 256, "alpha": 8},
}
# what the helper hard-codes rather than reads
HELPER_FIXED: dict[str, dict[str, list[float]]] = {
    "ppTSM_Inference_helper": {"mean": IMAGENET_MEAN, "std": IMAGENET_STD},
    "ppTSN_Inference_helper": {"mean": IMAGENET_MEAN, "std": IMAGENET_STD},
    "SlowFast_Inference_helper": {"mean": KINETICS_MEAN, "std": KINETICS_STD},
}


def from_config(inference: dict, input_names: list[str], where: str) -> Recipe:
    """The recipe of a PaddleVideo config's ``INFERENCE`` section (keys checked as the helper's arguments)."""
    from ..config import suggest_key

    if not isinstance(inference, dict) or "name" not in inference:
        raise ConfigError(f"{where}: INFERENCE needs a 'name' (the inference helper, e.g. ppTSM_Inference_helper)")
    helper = inference["name"]
    if helper not in HELPER_DEFAULTS:
        raise ConfigError(
            f"{where}: INFERENCE.name {helper!r}{suggest_key(str(helper), sorted(HELPER_DEFAULTS))} is "
            f"not a recognition helper vslim runs; supported: {', '.join(HELPER_DEFAULTS)}"
        )
    params = dict(HELPER_DEFAULTS[helper])
    for key, value in inference.items():
        if key in ("name", "top_k"):
            continue
        if key not in HELPER_DEFAULTS[helper]:
            known = sorted(HELPER_DEFAULTS[helper]) + ["top_k"]
            raise ConfigError(
                f"{where}: INFERENCE.{key} is not an argument of {helper}"
                f"{suggest_key(str(key), known)}; it takes {', '.join(known)}"
            )
        params[key] = value
    params.update(HELPER_FIXED.get(helper, {}))
    if helper == "SlowFast_Inference_helper":
        params["short_size"] = params["target_size"]  # JitterScale(target_size, target_size)
    try:
        values: dict[str, Any] = {
            k: (list(map(float, v)) if k in ("mean", "std") else int(v)) for k, v in params.items()
        }
        recipe = Recipe(helper=helper, input_names=list(input_names), source=where, **values)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: INFERENCE has a value of the wrong kind ({exc})") from None
    return recipe.validate(where)


def from_inputs(inputs) -> tuple[Recipe | None, str]:
    """What the input shapes alone prove: a recipe with its assumed defaults, or None and the reason.

    Only ``[N, T, 3, S, S]`` with a plausible frame count is unambiguous enough (PP-TSM's helper at
    PaddleVideo's defaults); every other layout differs by family in ways a shape cannot tell.
    """
    need = "give the PaddleVideo config the model was exported with (--config X.yaml, or `vslim import`)"
    if len(inputs) != 1:
        names = ", ".join(f"{s.name} {list(s.shape)}" for s in inputs)
        return None, f"the model takes {len(inputs)} inputs ({names}), which shapes alone do not explain; {need}"
    shape = list(inputs[0].shape)
    if len(shape) != 5 or any(d <= 0 for d in shape[1:]):
        return None, f"input {inputs[0].name} {shape} is not a fixed-size clip [N, T, 3, S, S]; {need}"
    if shape[1] == 3 and shape[2] != 3:
        return None, (
            f"input {inputs[0].name} {shape} is channels-first [N, 3, T, H, W] (TimeSformer, VideoSwin, "
            f"...), whose sampling and crops differ by family; {need}"
        )
    if shape[2] != 3 or shape[3] != shape[4]:
        return None, f"input {inputs[0].name} {shape} is not [N, T, 3, S, S]; {need}"
    frames, size = shape[1], shape[3]
    if frames > MAX_PLAIN_FRAMES:
        return None, (
            f"input {inputs[0].name} {shape} has {frames} images per clip: that may be segments x "
            f"crops (TSN's TenCrop feeds 25 x 10 = 250) or a long clip with its own scale (MoViNet: "
            f"50), so it is not read as {frames} frames; {need}"
        )
    short = max(size, round(size * 256 / 224))
    recipe = Recipe(
        helper="ppTSM_Inference_helper",
        input_names=[inputs[0].name],
        num_seg=frames,
        seg_len=1,
        short_size=short,
        target_size=size,
        source="input shape",
        assumed=[
            "PP-TSM's inference helper (segment centres, Pillow resize, centre crop)",
            f"num_seg {frames} (from the input shape), seg_len 1",
            f"short side {short} (PaddleVideo's 256 for a 224 crop, scaled)",
            "ImageNet mean and std",
        ],
    )
    return recipe.validate("input shape"), ""


MAX_PLAIN_FRAMES = 32
