"""``vslim-bench soak``: many requests at high concurrency, every answer checked, memory watched.

A bounded soak (loopback only, stops by itself): ``requests`` per protocol from
``concurrency`` threads, each request one of a few distinct clips whose expected
output was computed in-process first, so a wrong answer (a mixed-up batch slice,
a stale buffer) is caught, not only an error. The server's RSS is read from
``/proc`` after warm-up and at the end.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vslim.config import PredictorConfig
from vslim.inference import PaddlePredictor
from vslim.progress import progress_bar
from vslim.serving.bundle import CLIENT_SUFFIX, SERVER_SUFFIX
from vslim.serving.client import ClientConfig, make_client
from vslim.serving.client_registry import needs_shared_memory
from vslim.serving.errors import ServingError
from vslim.serving.process import ServerProcess

from .environment import environment, peak_rss_mib, process_memory_mib
from .stats import latency_stats


@dataclass
class SoakBench:
    bundle: str
    requests: int = 10_000
    concurrency: int = 32
    protocols: list[str] = field(default_factory=lambda: ["grpc", "http-proto"])
    distinct_clips: int = 8
    max_batch_size: int = 8
    workers: int = 1
    threads: int = 2
    duration_limit: float = 1800.0
    server_args: list[str] = field(default_factory=list)


def rss_mib(pid: int) -> float:
    return process_memory_mib(pid)["rss"]


def _blast(
    address: str,
    protocol: str,
    conf: ClientConfig,
    clips: np.ndarray,
    expected: np.ndarray,
    requests: int,
    concurrency: int,
    deadline: float,
    bar,
    on_half: Callable[[], None] = lambda: None,
) -> dict:
    """``on_half`` runs once, when the request half-way through is handed out (the RSS mid-point)."""
    feed_name = conf.signature.feeds[0].alias
    scale = float(np.abs(expected).max())
    counter, lock = iter(range(requests)), threading.Lock()
    latencies, wrong, errors = [], [], []

    def worker():
        with make_client(protocol, address, conf, timeout=60) as client:
            while time.perf_counter() < deadline:
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                if i == requests // 2:
                    on_half()
                k = i % len(clips)
                t0 = time.perf_counter()
                try:
                    out = client.predict({feed_name: clips[k : k + 1]})["outputs"][0]
                except ServingError as exc:
                    with lock:
                        errors.append(str(exc)[:200])
                    continue
                dt = time.perf_counter() - t0
                with lock:
                    latencies.append(dt)
                    if np.abs(out - expected[k]).max() > 1e-3 * scale:
                        wrong.append(i)
                    bar.update(1)

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    return {
        "sent": len(latencies) + len(errors),
        "answered": len(latencies),
        "wrong_answers": len(wrong),
        "errors": len(errors),
        "error_samples": errors[:3],
        "wall_s": wall,
        "infer_per_s": len(latencies) / wall,
        **latency_stats(latencies),
    }


def run_soak(cfg: SoakBench, say: Callable[[str], None] = print) -> dict:
    server_dir = Path(cfg.bundle)
    conf = ClientConfig.load(str(server_dir).replace(SERVER_SUFFIX, CLIENT_SUFFIX))
    shape = [d if d > 0 else 1 for d in conf.signature.feeds[0].shape]
    clips = np.random.default_rng(0).standard_normal([cfg.distinct_clips, *shape]).astype(np.float32)
    expected = PaddlePredictor(server_dir, PredictorConfig(threads=cfg.threads)).run(clips)
    report: dict[str, Any] = {"kind": "soak", "environment": environment(), "config": cfg.__dict__, "protocols": {}}
    with ServerProcess(
        server_dir,
        "--max-batch-size",
        cfg.max_batch_size,
        "--workers",
        cfg.workers,
        "--threads",
        cfg.threads,
        "--no-access-log",
        *cfg.server_args,
        *(("--allow-client-shm",) if needs_shared_memory(cfg.protocols) else ()),
    ) as server:
        with make_client(cfg.protocols[0], server.address, conf) as c:  # warm-up before the first RSS reading
            for k in range(len(clips)):
                c.predict({conf.signature.feeds[0].alias: clips[k : k + 1]})
        report["rss_mib_start"] = rss_mib(server.proc.pid)
        deadline = time.perf_counter() + cfg.duration_limit
        with progress_bar(total=cfg.requests * len(cfg.protocols), desc="soak", unit="req") as bar:
            for protocol in cfg.protocols:
                half: dict[str, float] = {}

                def record_half(half: dict[str, float] = half) -> None:
                    half.setdefault("rss", rss_mib(server.proc.pid))

                x = _blast(
                    server.address,
                    protocol,
                    conf,
                    clips,
                    expected,
                    cfg.requests,
                    cfg.concurrency,
                    deadline,
                    bar,
                    on_half=record_half,
                )
                report[f"rss_mib_after_{protocol}"] = rss_mib(server.proc.pid)
                # a per-request leak grows linearly; the allocator's high-water mark for concurrent bodies does not
                x["rss_mib_second_half_growth"] = report[f"rss_mib_after_{protocol}"] - half.get("rss", float("nan"))
                report["protocols"][protocol] = x
                say(
                    f"{protocol}: {report['protocols'][protocol]['answered']} answered, "
                    f"{report['protocols'][protocol]['wrong_answers']} wrong, "
                    f"{report['protocols'][protocol]['errors']} errors"
                )
        report["rss_mib_end"] = rss_mib(server.proc.pid)
    report["rss_growth_mib"] = report["rss_mib_end"] - report["rss_mib_start"]
    report["exit_code"] = server.proc.returncode
    report["environment"]["peak_rss_mib"] = peak_rss_mib()  # at the end: the run's peak
    return report


def soak_markdown(r: dict) -> str:
    from vslim.tables import markdown_table

    rows = [
        [
            p,
            x["sent"],
            x["answered"],
            x["wrong_answers"],
            x["errors"],
            f"{x['infer_per_s']:.1f}",
            f"{x.get('p50_ms', 0):.1f}",
            f"{x.get('p99_ms', 0):.1f}",
            f"{r[f'rss_mib_after_{p}']:.1f}",
            f"{x['rss_mib_second_half_growth']:+.1f}",
        ]
        for p, x in r["protocols"].items()
    ]
    cfg = r["config"]
    return (
        "\n".join(
            [
                "# Soak test\n",
                f"- Bundle `{cfg['bundle']}`; {cfg['concurrency']} concurrent clients, {cfg['distinct_clips']} distinct "
                f"clips with answers checked; server batching up to {cfg['max_batch_size']}",
                f"- Server RSS: {r['rss_mib_start']:.1f} MiB after warm-up, {r['rss_mib_end']:.1f} MiB at the end "
                f"({r['rss_growth_mib']:+.1f} MiB); exit code after SIGTERM {r['exit_code']}",
                "",
                markdown_table(
                    [
                        "protocol",
                        "sent",
                        "answered",
                        "wrong",
                        "errors",
                        "infer/s",
                        "p50 ms",
                        "p99 ms",
                        "RSS after, MiB",
                        "RSS growth over 2nd half, MiB",
                    ],
                    rows,
                ),
                "",
                "A per-request leak grows RSS in proportion to requests, so it shows in the second half of each protocol's "
                "run; the one-off rise after the first concurrent requests is the allocator keeping memory for the "
                "largest set of bodies in flight (HTTP-JSON bodies are ~10x the tensor's size while parsed).",
            ]
        )
        + "\n"
    )
