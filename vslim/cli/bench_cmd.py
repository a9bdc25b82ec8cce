"""``vslim bench runtime|e2e|serving|compare`` (alias ``vslim-bench``)."""
from __future__ import annotations

import argparse

from .common import add_command_group, add_decoder_arg, say


def _ints(text: str) -> list[int]:
    from ..errors import ConfigError

    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"expected comma-separated whole numbers, got {text!r}") from None
    if not values or min(values) < 1:
        raise ConfigError(f"expected whole numbers >= 1, got {text!r}")
    return values


def _models(items: list[str]) -> dict[str, str]:
    from ..errors import ConfigError

    models = {}
    for item in items:
        label, sep, path = item.partition("=")
        if not sep or not label or not path:
            raise ConfigError(f"--model takes LABEL=MODEL_DIR, got {item!r}")
        models[label] = path
    return models


def configure(command: str, p: argparse.ArgumentParser) -> None:
    if command != "compare":
        p.add_argument("--out", required=True, help="folder for <kind>.json, <kind>.md and plots")
    if command == "runtime":
        p.add_argument("--model", action="append", required=True, metavar="LABEL=DIR",
                       help="an inference model (repeat: FP32 and INT8 models; INT8 ones pair with their FP32 source)")
        p.add_argument("--backends", default="paddle-cpu,paddle-onednn,paddle-bf16,onnxruntime,openvino,paddle-gpu,"
                                              "paddle-trt",
                       help="comma-separated, of paddle-cpu, paddle-onednn, paddle-bf16, onnxruntime (FP32, its own "
                            "static INT8, vslim's QDQ INT8), openvino (fp32, bf16, default hint, NNCF INT8, vslim's "
                            "QDQ INT8), paddle-gpu, paddle-trt (default: all)")
        p.add_argument("--batch-sizes", default="1")
        p.add_argument("--threads", default="2")
        p.add_argument("--warmup", type=int, default=3)
        p.add_argument("--iterations", type=int, default=20)
        p.add_argument("--min-seconds", type=float, default=0.0, help="time each cell at least this long")
        p.add_argument("--agreement-list", help="labelled list: INT8 vs FP32 top-1 agreement measured in the same run")
        p.set_defaults(handler=runtime)
    elif command == "e2e":
        p.add_argument("--model", required=True, help="inference model folder")
        p.add_argument("--video", help="video file (default: a synthetic 10 s 320x240 video)")
        p.add_argument("--iterations", type=int, default=20)
        p.add_argument("--threads", type=int, default=2)
        add_decoder_arg(p)
        p.set_defaults(handler=e2e)
    elif command == "serving":
        p.add_argument("--bundle", help="NAME_serving_server: servers are started for the run")
        p.add_argument("--address", help="host:port of a running server (loopback only) instead of --bundle")
        p.add_argument("--client-conf", help="NAME_serving_client (default: beside --bundle)")
        p.add_argument("--protocols", default="grpc,http-proto,http,v2-grpc,v2-http",
                       help="comma-separated, of grpc, http-proto, http (Paddle Serving; http is JSON), "
                            "v2-grpc, v2-http (KServe v2, binary tensors) (default: all five)")
        p.add_argument("--concurrency", default="1,2,4,8,16")
        p.add_argument("--requests", type=int, default=200, help="requests per level (bound)")
        p.add_argument("--duration", type=float, default=20.0, help="seconds per level (bound)")
        p.add_argument("--batching", default="1,8", help="server --max-batch-size values to sweep (1 = off)")
        p.add_argument("--batch-timeout-ms", type=float, default=5.0)
        p.add_argument("--workers", type=int, default=1)
        p.add_argument("--threads", type=int, default=2)
        p.add_argument("--ray", metavar="ADDRESS",
                       help="also deploy --bundle on a Ray cluster ('local' starts one here) and load it through "
                            "Ray's proxies with each --ray-replicas count (needs the ray extra)")
        p.add_argument("--ray-replicas", default="1,2", help="replica counts to measure with --ray (default 1,2)")
        p.add_argument("--cpus-per-replica", type=float, default=1.0,
                       help="CPUs (and Paddle threads) per Ray replica (default 1)")
        p.set_defaults(handler=serving)
    elif command == "soak":
        p.add_argument("--bundle", required=True, help="NAME_serving_server: a server is started for the run")
        p.add_argument("--requests", type=int, default=10_000, help="requests per protocol (bound)")
        p.add_argument("--concurrency", type=int, default=32)
        p.add_argument("--protocols", default="grpc,http-proto",
                       help="comma-separated, of grpc, http-proto, http, v2-grpc, v2-http (default grpc,http-proto)")
        p.add_argument("--max-batch-size", type=int, default=8)
        p.add_argument("--duration-limit", type=float, default=1800.0, help="seconds before the soak stops anyway")
        p.set_defaults(handler=soak)
    elif command == "compare":
        p.add_argument("a", help="baseline report JSON")
        p.add_argument("b", help="report JSON to compare with it")
        p.set_defaults(handler=compare)


def register(sub) -> None:
    add_command_group(sub, "bench", "benchmarks: runtime, end to end, serving load", {
        "runtime": "models x backends x batch sizes x threads",
        "e2e": "video file to classes, preprocessing timed apart from inference",
        "serving": "load sweep against a server over gRPC and HTTP",
        "soak": "bounded soak: many requests, every answer checked, server memory watched",
        "compare": "ratios between two benchmark reports"}, configure)


def _finish(report: dict, out: str) -> int:
    from ..benchmarks.bench_report import MARKDOWN, write_report

    paths = write_report(report, out)
    print(MARKDOWN[report["kind"]](report))
    say("wrote " + ", ".join(str(p) for p in paths))
    return 0


def runtime(args) -> int:
    from ..benchmarks.backends import BACKENDS
    from ..benchmarks.runtime import RuntimeBench, run_runtime
    from ..errors import ConfigError

    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = [b for b in backends if b not in BACKENDS]
    if unknown:
        raise ConfigError(f"unknown backend {unknown[0]!r}; known: {', '.join(BACKENDS)}")
    cfg = RuntimeBench(models=_models(args.model), backends=backends, batch_sizes=_ints(args.batch_sizes),
                       threads=_ints(args.threads), warmup=args.warmup, iterations=args.iterations,
                       min_seconds=args.min_seconds, agreement_list=args.agreement_list)
    return _finish(run_runtime(cfg, say=say), args.out)


def e2e(args) -> int:
    from ..benchmarks.e2e import E2EBench, run_e2e

    return _finish(run_e2e(E2EBench(model=args.model, video=args.video, iterations=args.iterations,
                                    threads=args.threads, decoder=args.decoder), say=say), args.out)


def _protocols(text: str) -> list[str]:
    from ..errors import ConfigError
    from ..serving.client import PROTOCOLS

    names = [p.strip() for p in text.split(",") if p.strip()]
    unknown = [p for p in names if p not in PROTOCOLS]
    if unknown or not names:
        raise ConfigError(f"--protocols {text!r}: {'unknown ' + ', '.join(unknown) if unknown else 'none given'}; "
                          f"choose from {', '.join(PROTOCOLS)}")
    return names


def serving(args) -> int:
    from ..benchmarks.serving_load import ServingBench, run_serving

    cfg = ServingBench(bundle=args.bundle, address=args.address, client_conf=args.client_conf,
                       protocols=_protocols(args.protocols), concurrency=_ints(args.concurrency),
                       requests=args.requests, duration=args.duration, batch_sizes=_ints(args.batching),
                       batch_timeout_ms=args.batch_timeout_ms, workers=args.workers, threads=args.threads,
                       ray=args.ray, ray_replicas=_ints(args.ray_replicas), cpus_per_replica=args.cpus_per_replica)
    if args.ray:
        from ..serving.rayserve import require_ray

        require_ray()
    return _finish(run_serving(cfg, say=say), args.out)


def soak(args) -> int:
    from ..benchmarks.soak import SoakBench, run_soak

    report = run_soak(SoakBench(bundle=args.bundle, requests=args.requests, concurrency=args.concurrency,
                                protocols=_protocols(args.protocols),
                                max_batch_size=args.max_batch_size, duration_limit=args.duration_limit), say=say)
    _finish(report, args.out)
    ok = all(x["wrong_answers"] == 0 and x["errors"] == 0 for x in report["protocols"].values())
    return 0 if ok and report["exit_code"] == 0 else 1


def compare(args) -> int:
    from ..benchmarks.bench_report import compare as run

    print(run(args.a, args.b))
    return 0
