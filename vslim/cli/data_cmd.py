"""``vslim data synth``: write the synthetic demo/test data set."""

from __future__ import annotations

import argparse

from ..progress import progress_bar
from .common import add_command_group, say


def configure(command: str, p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="output folder (must not exist unless --overwrite)")
    p.add_argument("--seed", type=int, default=0, help="fixes every pixel (default: %(default)s)")
    p.add_argument("--num-train", type=int, default=400, help="training clips")
    p.add_argument("--num-val", type=int, default=100, help="validation clips")
    p.add_argument("--num-calib", type=int, default=32, help="calibration clips (for INT8)")
    p.add_argument("--frames", type=int, default=32, help="frames per clip")
    p.add_argument("--height", type=int, default=96, help="frame height in pixels")
    p.add_argument("--width", type=int, default=128, help="frame width in pixels")
    p.add_argument("--no-videos", action="store_true", help="write only rawframe folders")
    p.add_argument("--no-frames", action="store_true", help="write only video files")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out folder")
    p.set_defaults(handler=synth)


def register(sub) -> None:
    add_command_group(
        sub,
        "data",
        "video data sets",
        {"synth": "write the deterministic synthetic data set"},
        configure,
        descriptions={"synth": SYNTH_DESCRIPTION},
    )


SYNTH_DESCRIPTION = (
    "Write the deterministic synthetic data set: ten motion classes drawn frame by frame, as mp4 "
    "videos and rawframe folders, with PaddleVideo list files (train, val, calib) and labels.txt. "
    "The same --seed gives the same pixels."
)


def synth(args) -> int:
    from ..data.synth import SynthConfig, generate

    cfg = SynthConfig(
        seed=args.seed,
        num_train=args.num_train,
        num_val=args.num_val,
        num_calib=args.num_calib,
        num_frames=args.frames,
        height=args.height,
        width=args.width,
        write_videos=not args.no_videos,
        write_frames=not args.no_frames,
    )
    total = cfg.num_train + cfg.num_val + cfg.num_calib
    with progress_bar(total=total, desc="synthetic clips", unit="clip") as bar:
        out = generate(args.out, cfg, overwrite=args.overwrite, progress=lambda done, _: bar.update(1))
    say(f"wrote {total} clips ({cfg.num_train} train, {cfg.num_val} val, {cfg.num_calib} calib) to {out}")
    print(out)
    return 0
