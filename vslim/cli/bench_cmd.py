"""``vslim bench runtime|e2e|serving|throughput|soak|compare`` (alias ``vslim-bench``)."""

from __future__ import annotations

import argparse

from ..serving.client_registry import protocol_names
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


COMMANDS = {
    "runtime": "inference latency: models x backends x batch sizes x threads",
    "e2e": "one video file to classes, decoding and preprocessing timed apart from inference",
    "serving": "load sweep against a server over gRPC and HTTP, every protocol",
    "throughput": "clips/s under concurrency: vslim-serve against the peers built by hand, one process each",
    "soak": "bounded soak: many requests, every answer checked, server memory watched",
    "compare": "ratios between two benchmark reports of the same kind",
}
DESCRIPTIONS = {
    "runtime": "Time inference alone for each model on each backend, batch size and thread count, interleaved in "
    "one run, and check every backend's outputs against Paddle's. Writes runtime.json, runtime.md and "
    "latency_vs_batch.png to --out.",
    "e2e": "Time one clip end to end from a video file: decoding and frame sampling, transforms, and inference, "
    "each apart, against decoding every frame first (PaddleVideo's way). Writes e2e.json and e2e.md.",
    "serving": "Start servers from a bundle (with and without dynamic batching) or load a running one on this "
    "machine, and sweep concurrency levels for each protocol; the server's own metrics split the time. "
    "Writes serving.json, serving.md and throughput plots.",
    "throughput": "Load vslim-serve (from each --bundle, batching off and on) and the peer runtimes a user builds "
    "by hand from the FP32 --model (OpenVINO with its THROUGHPUT hint and async infer requests, ONNX Runtime with "
    "its own threading; FP32 and their own INT8) at each concurrency, each in a process of its own, one at a time, "
    "in interleaved rounds. Writes throughput.json and throughput.md: clips/s, p50/p99, peak RSS, layouts, and "
    "vslim-serve's best against the best peer per precision class.",
    "soak": "Send many requests per protocol to a server started from a bundle, check every answer against the "
    "in-process predictor and watch the server's memory. Exit 1 on any wrong answer or error.",
    "compare": "Compare report B with report A (both <kind>.json from the same kind of `vslim bench` run): p50 "
    "latency and throughput ratios for every row both have. Reports with no row in common are an "
    "error naming what each holds.",
}
BACKEND_NAMES = ("paddle-cpu", "paddle-onednn", "paddle-bf16", "onnxruntime", "openvino", "paddle-gpu", "paddle-trt")


def _protocols_help(default: str) -> str:
    from ..serving.client_registry import rows

    names = "; ".join(f"{r.name}: {r.description}" for r in rows() if r.tensors)
    return f"comma-separated protocols, of {names} (default: {default})"


def configure(command: str, p: argparse.ArgumentParser) -> None:
    if command != "compare":
        p.add_argument(
            "--out", required=True, help=f"folder for {command}.json, {command}.md and plots (created if needed)"
        )
    if command == "runtime":
        p.add_argument(
            "--model",
            action="append",
            required=True,
            metavar="LABEL=DIR",
            help="an inference model (repeat: FP32 and INT8 models; INT8 ones pair with their FP32 source)",
        )
        p.add_argument(
            "--backends",
            default=",".join(BACKEND_NAMES),
            help="comma-separated, of paddle-cpu, paddle-onednn, paddle-bf16, onnxruntime (FP32, its own "
            "static INT8, vslim's QDQ INT8), openvino (fp32, bf16, default hint, NNCF INT8, vslim's "
            "QDQ INT8), paddle-gpu, paddle-trt; backends this machine lacks are skipped with the "
            "reason (default: all, %(default)s)",
        )
        p.add_argument(
            "--batch-sizes", default="1", help="comma-separated whole numbers, e.g. 1,4,8 (default: %(default)s)"
        )
        p.add_argument(
            "--threads", default="2", help="comma-separated CPU thread counts, e.g. 1,2,4 (default: %(default)s)"
        )
        p.add_argument("--warmup", type=int, default=3, help="untimed calls per cell (default: %(default)s)")
        p.add_argument("--iterations", type=int, default=20, help="timed calls per cell (default: %(default)s)")
        p.add_argument(
            "--min-seconds",
            type=float,
            default=0.0,
            help="time each cell at least this long (default: %(default)s: --iterations only)",
        )
        p.add_argument("--agreement-list", help="labelled list: INT8 vs FP32 top-1 agreement measured in the same run")
        p.set_defaults(handler=runtime)
    elif command == "e2e":
        p.add_argument("--model", required=True, help="inference model folder")
        p.add_argument("--video", help="video file (default: a synthetic 10 s 320x240 video)")
        p.add_argument("--iterations", type=int, default=20, help="timed clips (default: %(default)s)")
        p.add_argument("--threads", type=int, default=2, help="CPU threads for inference (default: %(default)s)")
        add_decoder_arg(p)
        p.set_defaults(handler=e2e)
    elif command == "serving":
        p.add_argument("--bundle", help="NAME_serving_server: servers are started for the run")
        p.add_argument("--address", help="host:port of a running server (loopback only) instead of --bundle")
        p.add_argument("--client-conf", help="NAME_serving_client (default: beside --bundle)")
        p.add_argument(
            "--protocols",
            default=",".join(protocol_names(tensors_only=True, same_host=False)),
            help=_protocols_help("every one that sends tensors, %(default)s"),
        )
        p.add_argument(
            "--concurrency",
            default="1,2,4,8,16",
            help="comma-separated numbers of concurrent clients (default: %(default)s)",
        )
        p.add_argument(
            "--requests",
            type=int,
            default=200,
            help="requests per level; a level ends at this or --duration (default: %(default)s)",
        )
        p.add_argument(
            "--duration",
            type=float,
            default=20.0,
            help="seconds per level; a level ends at this or --requests (default: %(default)s)",
        )
        p.add_argument(
            "--video",
            metavar="FILE",
            help="also send this video file whole to v2's NAME_video model (the server decodes it) with each v2 "
            "protocol, beside the tensor requests: video in, label out, under the same load",
        )
        p.add_argument(
            "--split-ports",
            action="store_true",
            help="also sweep, without batching, a server whose shared port relays through asyncio streams (as with "
            "TLS) and one with --grpc-port (Triton's layout: HTTP and gRPC each on its own port, nothing relayed), "
            "to measure the shared port's kernel relay against both",
        )
        p.add_argument(
            "--batching",
            default="1,8",
            help="server --max-batch-size values to sweep, 1 = no batching (default: %(default)s)",
        )
        p.add_argument(
            "--batch-timeout-ms",
            type=float,
            default=5.0,
            help="server's wait for a batch to fill, ms (default: %(default)s)",
        )
        p.add_argument("--workers", type=int, default=1, help="server inference workers (default: %(default)s)")
        p.add_argument("--threads", type=int, default=2, help="CPU threads per worker (default: %(default)s)")
        p.add_argument(
            "--ray",
            metavar="ADDRESS",
            help="also deploy --bundle on a Ray cluster ('local' starts one here) and load it through "
            "Ray's proxies with each --ray-replicas count (needs the ray extra)",
        )
        p.add_argument(
            "--ray-replicas",
            default="1,2",
            help="comma-separated replica counts to measure with --ray (default: %(default)s)",
        )
        p.add_argument(
            "--cpus-per-replica",
            type=float,
            default=1.0,
            help="CPUs (and Paddle threads) per Ray replica (default: %(default)s)",
        )
        p.add_argument(
            "--ray-ingress",
            default="proxy",
            help="comma-separated: 'proxy' (through Ray's proxies), 'direct' (each replica's own ports, Ray's "
            "direct ingress); with --ray local each starts its own cluster (default: %(default)s)",
        )
        p.add_argument(
            "--rounds",
            type=int,
            default=3,
            help="Ray's loads alternate with a vslim-serve sized like one replica in this many rounds, so that "
            "the hop is measured over the same minutes (default: %(default)s)",
        )
        p.set_defaults(handler=serving)
    elif command == "throughput":
        from ..benchmarks.peer_load import PEERS

        p.add_argument(
            "--bundle",
            action="append",
            default=[],
            help="NAME_serving_server of a bundle, served with its measured runtime and layout (repeat: FP32 and "
            "INT8 bundles)",
        )
        p.add_argument("--model", help="the FP32 inference model the peers are built from")
        p.add_argument(
            "--peers", default=",".join(PEERS), help="comma-separated, of %(default)s ('' for none; default: all)"
        )
        p.add_argument("--calib-list", help="PaddleVideo list the INT8 peers calibrate on (up to 32 clips)")
        p.add_argument("--concurrency", default="1,4,8", help="comma-separated levels (default: %(default)s)")
        p.add_argument("--duration", type=float, default=15.0, help="timed seconds per level (default: %(default)s)")
        p.add_argument("--rounds", type=int, default=2, help="interleaved rounds (default: %(default)s)")
        p.add_argument(
            "--max-batch-size",
            type=int,
            default=4,
            help="vslim-serve's batching contender (1: batching off only; default: %(default)s)",
        )
        p.add_argument(
            "--protocol", default="v2-grpc", help="protocol vslim-serve is loaded over (default: %(default)s)"
        )
        p.add_argument("--workers", type=int, help="server --workers (default: the bundle's measured layout)")
        p.add_argument("--threads", type=int, help="server --threads (default: the bundle's measured layout)")
        p.add_argument(
            "--video",
            metavar="FILE",
            help="video in, label out: vslim-serve gets this whole file (v2 NAME_video, decoded server-side), the "
            "peers get it preprocessed PaddleVideo's way in each client thread (every frame decoded, Pillow "
            "transforms), and the answers are compared",
        )
        p.set_defaults(handler=throughput)
    elif command == "soak":
        p.add_argument("--bundle", required=True, help="NAME_serving_server: a server is started for the run")
        p.add_argument(
            "--requests",
            type=int,
            default=10_000,
            help="requests per protocol; stops at this or --duration-limit (default: %(default)s)",
        )
        p.add_argument("--concurrency", type=int, default=32, help="concurrent clients (default: %(default)s)")
        p.add_argument("--protocols", default="grpc,http-proto", help=_protocols_help("%(default)s"))
        p.add_argument(
            "--max-batch-size",
            type=int,
            default=8,
            help="the server's dynamic batch limit, 1 = no batching (default: %(default)s)",
        )
        p.add_argument(
            "--duration-limit",
            type=float,
            default=1800.0,
            help="seconds before the soak stops anyway (default: %(default)s)",
        )
        p.set_defaults(handler=soak)
    elif command == "compare":
        p.add_argument("a", help="baseline report JSON (runtime.json, e2e.json or serving.json)")
        p.add_argument("b", help="report JSON of the same kind to compare with it")
        p.set_defaults(handler=compare)


def register(sub) -> None:
    add_command_group(
        sub,
        "bench",
        "benchmarks: runtime, end to end, serving load, throughput, soak, compare",
        COMMANDS,
        configure,
        descriptions=DESCRIPTIONS,
    )


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
    cfg = RuntimeBench(
        models=_models(args.model),
        backends=backends,
        batch_sizes=_ints(args.batch_sizes),
        threads=_ints(args.threads),
        warmup=args.warmup,
        iterations=args.iterations,
        min_seconds=args.min_seconds,
        agreement_list=args.agreement_list,
    )
    return _finish(run_runtime(cfg, say=say), args.out)


def e2e(args) -> int:
    from ..benchmarks.e2e import E2EBench, run_e2e

    return _finish(
        run_e2e(
            E2EBench(
                model=args.model,
                video=args.video,
                iterations=args.iterations,
                threads=args.threads,
                decoder=args.decoder,
            ),
            say=say,
        ),
        args.out,
    )


def _protocols(text: str) -> list[str]:
    from ..errors import ConfigError

    choices = protocol_names(tensors_only=True)
    names = [p.strip() for p in text.split(",") if p.strip()]
    unknown = [p for p in names if p not in choices]
    if unknown or not names:
        raise ConfigError(
            f"--protocols {text!r}: {'unknown ' + ', '.join(unknown) if unknown else 'none given'}; "
            f"choose from {', '.join(choices)}"
        )
    return names


def serving(args) -> int:
    from ..benchmarks.serving_load import ServingBench, run_serving

    cfg = ServingBench(
        bundle=args.bundle,
        address=args.address,
        client_conf=args.client_conf,
        protocols=_protocols(args.protocols),
        concurrency=_ints(args.concurrency),
        requests=args.requests,
        duration=args.duration,
        batch_sizes=_ints(args.batching),
        split_ports=args.split_ports,
        video=args.video,
        batch_timeout_ms=args.batch_timeout_ms,
        workers=args.workers,
        threads=args.threads,
        ray=args.ray,
        ray_replicas=_ints(args.ray_replicas),
        cpus_per_replica=args.cpus_per_replica,
        ray_ingress=[i.strip() for i in args.ray_ingress.split(",") if i.strip()],
        rounds=args.rounds,
    )
    if args.ray:
        from ..serving.rayserve import require_ray

        require_ray()
    return _finish(run_serving(cfg, say=say), args.out)


def throughput(args) -> int:
    from ..benchmarks.throughput import ThroughputBench, run_throughput

    cfg = ThroughputBench(
        bundles=args.bundle,
        model=args.model,
        peers=[p.strip() for p in args.peers.split(",") if p.strip()],
        calib_list=args.calib_list,
        concurrency=_ints(args.concurrency),
        duration=args.duration,
        rounds=args.rounds,
        max_batch_size=args.max_batch_size,
        protocol=args.protocol,
        workers=args.workers,
        threads=args.threads,
        video=args.video,
    )
    return _finish(run_throughput(cfg, say=say), args.out)


def soak(args) -> int:
    from ..benchmarks.soak import SoakBench, run_soak

    report = run_soak(
        SoakBench(
            bundle=args.bundle,
            requests=args.requests,
            concurrency=args.concurrency,
            protocols=_protocols(args.protocols),
            max_batch_size=args.max_batch_size,
            duration_limit=args.duration_limit,
        ),
        say=say,
    )
    _finish(report, args.out)
    ok = all(x["wrong_answers"] == 0 and x["errors"] == 0 for x in report["protocols"].values())
    return 0 if ok and report["exit_code"] == 0 else 1


def compare(args) -> int:
    from ..benchmarks.bench_report import compare as run

    print(run(args.a, args.b))
    return 0
