"""``vslim-bench throughput``: clips/s under concurrency, vslim-serve against the best peer a user builds by hand.

Contenders, each in a process of its own, started, loaded and stopped one at a time (so memory holds one
backend, and each process's peak RSS is its own), in interleaved rounds (the order reversed every other
round, so drift in the host's speed falls on every contender alike):

- ``vslim-serve`` from each bundle, with its measured runtime and worker layout (``runtime.json``),
  batching off and at ``max_batch_size``, loaded over one protocol (v2 gRPC by default) by ``concurrency``
  client threads in this process: the served path is paid on every request, client encoding included.
- the peers (``peer_load.py``), built from the FP32 model by hand and driven the way their own docs say for
  throughput, in-process: nothing between the caller and the runtime.

Reported per contender and concurrency: clips/s, p50 and p99 latency (medians over rounds), the layout
(workers x threads, OpenVINO's streams), the process's peak RSS; and per precision class (float, INT8),
vslim-serve's best against the best peer, with the target (>= 1.0x at concurrency 8) met or not.
"""

from __future__ import annotations

import functools
import json
import statistics
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vslim.errors import ConfigError, DataError, VslimError
from vslim.inference.recorded import recorded_choice, recorded_layout
from vslim.progress import progress_bar
from vslim.serving.bundle import CLIENT_SUFFIX, SERVER_SUFFIX, load_bundle
from vslim.serving.client import ClientConfig, make_client
from vslim.serving.client_registry import needs_shared_memory, protocol_names
from vslim.serving.process import ServerProcess

from .environment import environment, environment_lines, process_memory_mib
from .peer_load import PEERS, PRECISION
from .serving_load import _load

TARGET_LEVEL = 8
VIDEO_TARGET = 1.3  # video in, label out: vslim decodes only what it samples, server-side


@dataclass
class ThroughputBench:
    bundles: list[str]  # NAME_serving_server folders: vslim-serve contenders
    model: str | None = None  # the FP32 model the peers are built from (none: no peers)
    peers: list[str] = field(default_factory=lambda: list(PEERS))
    calib_list: str | None = None  # the clips the peers' own INT8 calibrate on
    concurrency: list[int] = field(default_factory=lambda: [1, 4, 8])
    duration: float = 15.0
    rounds: int = 2
    max_batch_size: int = 4  # the batching contender's --max-batch-size (1: batching off only)
    batch_timeout_ms: float = 5.0
    protocol: str = "v2-grpc"
    workers: int | None = None  # server flags; None: the bundle's measured layout
    threads: int | None = None
    cache: str | None = None  # peers' conversion cache (default: vslim's user cache)
    video: str | None = None  # video in, label out: every contender gets this file instead of a tensor

    def validate(self) -> ThroughputBench:
        if not self.bundles and not self.model:
            raise ConfigError("give --bundle (vslim-serve contenders) and/or --model with --peers (the peers)")
        for b in self.bundles:
            if not Path(b).is_dir():
                raise DataError(f"--bundle {b} is not a folder; give the NAME_serving_server folder of a bundle")
        if self.peers and not self.model:
            raise ConfigError("--peers are built from the FP32 model: give --model DIR (or --peers '' for none)")
        unknown = [p for p in self.peers if p not in PEERS]
        if unknown:
            raise ConfigError(f"unknown peer {unknown[0]!r}; known: {', '.join(PEERS)}")
        if any(PRECISION[p] == "int8" for p in self.peers) and not self.calib_list:
            raise ConfigError("the INT8 peers calibrate on clips: give --calib-list (or leave them out of --peers)")
        if self.protocol not in protocol_names(tensors_only=True):
            raise ConfigError(
                f"--protocol {self.protocol!r} is not one that sends tensors: {', '.join(protocol_names(True))}"
            )
        if self.video is not None:
            if not Path(self.video).is_file():
                raise DataError(f"--video {self.video} does not exist; give a video file the model can read")
            if not self.protocol.startswith("v2-"):
                raise ConfigError("--video is sent to v2's NAME_video model: use --protocol v2-grpc or v2-http")
        if self.rounds < 1 or self.duration <= 0 or self.max_batch_size < 1:
            raise ConfigError("--rounds and --max-batch-size must be >= 1, --duration > 0")
        return self


@dataclass
class Contender:
    label: str
    kind: str  # vslim-serve or peer
    precision_class: str  # float or int8: who is compared with whom
    run: Callable[[], dict]  # one round: {"levels": [...], "layout": ..., "peak_rss_mib": ...}


def _class(precision: str) -> str:
    return "int8" if precision == "int8" else "float"


def _served(cfg: ThroughputBench, bundle: str, max_batch: int, conf: ClientConfig, clip: np.ndarray) -> dict:
    flags: list[Any] = ["--max-batch-size", max_batch, "--batch-timeout-ms", cfg.batch_timeout_ms, "--no-access-log"]
    if needs_shared_memory([cfg.protocol]):
        flags.append("--allow-client-shm")
    if cfg.workers is not None:
        flags += ["--workers", cfg.workers]
    if cfg.threads is not None:
        flags += ["--threads", cfg.threads]
    levels = []
    result: dict[str, Any] = {}
    with ServerProcess(bundle, *flags) as server:
        # the ready line: "ready in 3.1s: paddle int8 on cpu, 2 worker(s) x 1 thread(s), no batching"
        layout = next((line.split(": ", 2)[-1] for line in server.lines if "ready in" in line), "")
        if cfg.video is not None:  # its answer, to hold against the hand-built pipeline's
            with make_client(cfg.protocol, server.address, conf) as client:
                top = client.classify_files([cfg.video], 5)[0]
            result["answer"] = {"top1": top.classes[0], "top5": top.classes, "scores": top.scores}
        for level in cfg.concurrency:
            # untimed: connections, caches
            _load(server.address, cfg.protocol, conf, clip, level, 2 * level, 60.0, cfg.video)
            row = _load(server.address, cfg.protocol, conf, clip, level, 1 << 30, cfg.duration, cfg.video)
            if row["errors"]:
                raise VslimError(f"vslim-serve answered {row['errors']} requests with errors: {row['error_samples']}")
            levels.append({"concurrency": level, **row, "clips_per_s": row["infer_per_s"]})
        memory = process_memory_mib(server.proc.pid)
    return {**result, "levels": levels, "layout": layout, "peak_rss_mib": memory["peak"]}


def _peer(cfg: ThroughputBench, peer: str) -> dict:
    assert cfg.model is not None  # validate(): peers need the model
    cmd = [
        sys.executable,
        "-m",
        "vslim.benchmarks.peer_load",
        "--peer",
        peer,
        "--model",
        cfg.model,
        "--concurrency",
        ",".join(map(str, cfg.concurrency)),
        "--duration",
        str(cfg.duration),
    ]
    if cfg.calib_list and PRECISION[peer] == "int8":
        cmd += ["--calib-list", cfg.calib_list]
    if cfg.cache:
        cmd += ["--cache", cfg.cache]
    if cfg.video:
        cmd += ["--video", cfg.video]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        tail = " | ".join(done.stderr.strip().splitlines()[-5:])
        raise VslimError(f"peer {peer} failed (exit {done.returncode}): {tail}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def contenders(cfg: ThroughputBench, say: Callable[[str], None]) -> tuple[list[Contender], ClientConfig | None]:
    found: list[Contender] = []
    conf = None
    for bundle in cfg.bundles:
        served = load_bundle(bundle, verify=False)
        choice = recorded_choice(bundle) or {"runtime": "paddle", "precision": served.info.precision}
        layout = recorded_layout(bundle)
        name = Path(bundle).name.removesuffix(SERVER_SUFFIX)
        conf = ClientConfig.load(bundle.rstrip("/").replace(SERVER_SUFFIX, CLIENT_SUFFIX))
        shape = [d if d > 0 else 1 for d in conf.signature.feeds[0].shape]
        clip = np.random.default_rng(0).standard_normal(shape).astype(conf.signature.feeds[0].dtype)
        what = f"{choice['runtime']} {choice['precision']}"
        if layout and cfg.workers is None and cfg.threads is None:
            what += f", {layout['workers']}x{layout['threads']}"
        for batch in sorted({1, cfg.max_batch_size}):
            label = f"vslim-serve {name}{' video' if cfg.video else ''} ({what}, " + (
                f"{'batching ' + str(batch) if batch > 1 else 'no batching'})"
            )
            found.append(
                Contender(
                    label,
                    "vslim-serve",
                    _class(choice["precision"]),
                    functools.partial(_served, cfg, bundle, batch, conf, clip),
                )
            )
    for peer in cfg.peers:
        label = f"hand-built: PaddleVideo preprocessing + {peer}" if cfg.video else f"peer {peer}"
        found.append(Contender(label, "peer", _class(PRECISION[peer]), functools.partial(_peer, cfg, peer)))
    return found, conf


def _median_levels(rounds: list[dict]) -> list[dict]:
    levels = []
    for i, first in enumerate(rounds[0]["levels"]):
        every = [r["levels"][i] for r in rounds]
        levels.append(
            {
                "concurrency": first["concurrency"],
                **{
                    key: statistics.median(x[key] for x in every if x.get(key) is not None)
                    for key in ("clips_per_s", "p50_ms", "p99_ms", "mean_ms")
                    if any(x.get(key) is not None for x in every)
                },
                "calls": sum(x.get("calls", 0) for x in every),
                "per_round_clips_per_s": [x["clips_per_s"] for x in every],
            }
        )
    return levels


def run_throughput(cfg: ThroughputBench, say: Callable[[str], None] = print) -> dict:
    cfg.validate()
    found, _ = contenders(cfg, say)
    measured: dict[str, list[dict]] = {c.label: [] for c in found}
    with progress_bar(total=cfg.rounds * len(found), desc="throughput", unit="contender") as bar:
        for round_number in range(cfg.rounds):
            order = found if round_number % 2 == 0 else found[::-1]
            for c in order:
                say(f"round {round_number + 1}/{cfg.rounds}: {c.label}")
                measured[c.label].append(c.run())
                bar.update(1)
    rows = []
    for c in found:
        rounds = measured[c.label]
        rows.append(
            {
                "contender": c.label,
                "kind": c.kind,
                "class": c.precision_class,
                "layout": rounds[-1].get("layout"),
                **({"answer": rounds[-1]["answer"]} if "answer" in rounds[-1] else {}),
                "peak_rss_mib": max(r.get("peak_rss_mib") or 0 for r in rounds),
                "levels": _median_levels(rounds),
            }
        )
    report: dict[str, Any] = {
        "kind": "throughput",
        "environment": environment(),
        "config": cfg.__dict__,
        "rows": rows,
        "summary": summarize(rows, VIDEO_TARGET if cfg.video else 1.0),
    }
    return report


def summarize(rows: list[dict], target: float = 1.0) -> list[dict]:
    """Per precision class (float: FP32/BF16; int8; any: whatever is fastest, as a user after throughput would
    choose) and concurrency: vslim-serve's best clips/s against the best peer's."""
    out = []
    for klass in ("float", "int8", "any"):
        ours = [r for r in rows if klass in ("any", r["class"]) and r["kind"] == "vslim-serve"]
        theirs = [r for r in rows if klass in ("any", r["class"]) and r["kind"] == "peer"]
        if not ours or not theirs:
            continue
        for i, level in enumerate(ours[0]["levels"]):
            c = level["concurrency"]
            best_ours = max(ours, key=lambda r: r["levels"][i]["clips_per_s"])
            best_peer = max(theirs, key=lambda r: r["levels"][i]["clips_per_s"])
            a, b = best_ours["levels"][i], best_peer["levels"][i]
            out.append(
                {
                    "class": klass,
                    "concurrency": c,
                    "vslim": best_ours["contender"],
                    "vslim_clips_per_s": a["clips_per_s"],
                    "vslim_p99_ms": a.get("p99_ms"),
                    "best_peer": best_peer["contender"],
                    "peer_clips_per_s": b["clips_per_s"],
                    "peer_p99_ms": b.get("p99_ms"),
                    "ratio": a["clips_per_s"] / b["clips_per_s"] if b["clips_per_s"] else None,
                    "same_top1": (
                        best_ours["answer"]["top1"] == best_peer["answer"]["top1"]
                        if "answer" in best_ours and "answer" in best_peer
                        else None
                    ),
                    "target": f">= {target:g}x" if c == TARGET_LEVEL else None,
                    "met": (a["clips_per_s"] >= target * b["clips_per_s"]) if c == TARGET_LEVEL else None,
                }
            )
    return out


def throughput_markdown(r: dict) -> str:
    from vslim.tables import markdown_table

    cfg = r["config"]
    video = cfg.get("video")
    lines = [
        "# Throughput under concurrency: vslim-serve vs the best peer built by hand"
        + (f" (video in, label out: {Path(video).name})" if video else "")
        + "\n",
        *environment_lines(r["environment"]),
        f"- Each contender in its own process, loaded one at a time, {cfg['rounds']} interleaved round(s) of "
        f"{cfg['duration']:g} s per level; vslim-serve over {cfg['protocol']} from client threads on the same host, "
        "peers in-process (no transport). Figures are medians over rounds."
        + (
            " Video: vslim-serve gets the whole file (v2 NAME_video, decoded server-side); the hand-built contenders "
            "decode every frame and transform with Pillow in each client thread (PaddleVideo's inference "
            "preprocessing), then run the peer."
            if video
            else ""
        ),
        "",
    ]
    if r["summary"]:
        lines.append("## vslim-serve's best vs the best peer\n")
        lines.append(
            markdown_table(
                [
                    "class",
                    "concurrency",
                    "vslim-serve",
                    "clips/s",
                    "p99 ms",
                    "best peer",
                    "clips/s",
                    "p99 ms",
                    "ratio",
                    "same top-1",
                ],
                [
                    [
                        s["class"],
                        s["concurrency"],
                        s["vslim"],
                        s["vslim_clips_per_s"],
                        s["vslim_p99_ms"],
                        s["best_peer"],
                        s["peer_clips_per_s"],
                        s["peer_p99_ms"],
                        f"{s['ratio']:.2f}x"
                        + ("" if s["met"] is None else f" ({'met' if s['met'] else 'not met'}: {s['target']})"),
                        "-" if s["same_top1"] is None else ("yes" if s["same_top1"] else "no"),
                    ]
                    for s in r["summary"]
                ],
            )
        )
        lines.append("")
    lines.append("## Every contender\n")
    table = []
    for row in r["rows"]:
        layout = row["layout"]
        if isinstance(layout, dict):
            layout = ", ".join(f"{k} {v}" for k, v in layout.items())
        for level in row["levels"]:
            table.append(
                [
                    row["contender"],
                    level["concurrency"],
                    level.get("clips_per_s"),
                    level.get("p50_ms"),
                    level.get("p99_ms"),
                    row["peak_rss_mib"],
                    layout,
                ]
            )
    lines.append(
        markdown_table(["contender", "concurrency", "clips/s", "p50 ms", "p99 ms", "peak RSS MiB", "layout"], table)
    )
    return "\n".join(lines) + "\n"
