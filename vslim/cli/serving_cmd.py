"""Serving commands: ``vslim serve`` (``vslim-serve``) and ``vslim client`` (``vslim-client``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..serving import client_registry
from .common import add_runtime_arg, print_json, say
from .parser import DefaultsHelpFormatter


def configure(command: str, p: argparse.ArgumentParser) -> None:
    if command == "serve":
        p.description = SERVE_DESCRIPTION
        p.epilog = SERVE_EPILOG
        p.formatter_class = _ServeHelp
        p.add_argument(
            "--bundle",
            metavar="PATH",
            help="the NAME_serving_server folder that vslim-package --target serving wrote (not the model "
            "folder, not the NAME_serving_client half); this or --model-repository, unless --status",
        )
        p.add_argument(
            "--host",
            default="127.0.0.1",
            help="address to bind: 127.0.0.1 = this machine only, 0.0.0.0 = every interface (default: %(default)s)",
        )
        p.add_argument(
            "--port",
            "--http-port",
            type=int,
            default=None,
            metavar="PORT",
            help="one port for gRPC and HTTP, 0-65535, 0 = any free port (default: 9393); HTTP's alone with "
            "--grpc-port; with --ray: Ray's HTTP proxy (default: 8000)",
        )
        p.add_argument(
            "--grpc-port",
            type=int,
            default=None,
            metavar="PORT",
            help="gRPC on a port of its own, as Triton lays them out (--http-port / --grpc-port): each transport "
            "listens itself, nothing is relayed (0 = any free port); with --ray: Ray's gRPC proxy, which cannot "
            "share --port (default: one port for both; 9000 with --ray)",
        )
        p.add_argument(
            "--workers",
            type=int,
            default=None,
            metavar="N",
            help="inference workers (predictor clones; OpenVINO streams) running at once, >= 1 (default: the split "
            "of threads the bundle measured fastest under load at packaging, else 1)",
        )
        p.add_argument(
            "--threads",
            type=int,
            default=None,
            metavar="N",
            help="CPU threads per worker, >= 1 (default: the bundle's measured split, else 2)",
        )
        p.add_argument(
            "--max-batch-size",
            type=int,
            default=1,
            metavar="N",
            help="dynamic batching: largest batch merged from concurrent requests, >= 1; 1 = off "
            "(default: %(default)s)",
        )
        p.add_argument(
            "--batch-timeout-ms",
            type=float,
            default=2.0,
            metavar="MS",
            help="dynamic batching: longest a request waits for others to merge with, >= 0 (default: %(default)s)",
        )
        p.add_argument(
            "--device",
            choices=["cpu", "gpu"],
            default="cpu",
            help="where inference runs: %(choices)s (default: %(default)s)",
        )
        p.add_argument("--use-tensorrt", action="store_true", help="run through TensorRT (needs --device gpu)")
        add_runtime_arg(
            p,
            "auto takes what vslim-package measured fastest on the packaging host (runtime.json), else — or when the "
            "recorded runtime is not installed — the reference",
        )
        p.add_argument(
            "--precision",
            choices=["auto", "fp32", "fp16", "bf16", "int8"],
            default="auto",
            help="%(choices)s; auto: the model's own; bf16 needs a CPU with AVX-512 BF16 or AMX; fp16 "
            "the GPU (default: %(default)s)",
        )
        p.add_argument(
            "--max-body-mb",
            type=int,
            default=64,
            metavar="MIB",
            help="largest request body in MiB, >= 1 (default: %(default)s)",
        )
        p.add_argument(
            "--max-request-batch",
            type=int,
            default=64,
            metavar="N",
            help="largest batch one request may send, >= 1 (default: %(default)s)",
        )
        p.add_argument(
            "--grace-seconds",
            type=float,
            default=30.0,
            metavar="S",
            help="on SIGTERM/SIGINT, how long in-flight requests may take to finish, >= 0 (default: %(default)s)",
        )
        p.add_argument(
            "--no-warmup",
            action="store_true",
            help="report ready without first running every batch size (faster start, slow first batches)",
        )
        p.add_argument(
            "--tls-cert", metavar="PEM", help="PEM certificate: serve gRPC and HTTP over TLS (default: plaintext)"
        )
        p.add_argument("--tls-key", metavar="PEM", help="PEM private key of --tls-cert")
        p.add_argument(
            "--auth-token-file",
            metavar="FILE",
            help="file holding a bearer token required on every endpoint but health (default: no token)",
        )
        p.add_argument(
            "--allow-client-shm",
            action="store_true",
            help="let clients on this host hand tensors over in POSIX shared memory (Triton's system shared memory "
            "extension, v2 HTTP and gRPC; tritonclient and perf_analyzer --shared-memory system use it): the "
            "server maps the regions they register and reads and writes them (default: off, as in Triton)",
        )
        p.add_argument(
            "--log-level",
            choices=["debug", "info", "warning", "error"],
            default="info",
            help="what vslim-serve logs on stderr: debug adds its configuration and uvicorn's log; info "
            "one access line per request; warning only problems; error only failures. The "
            "'listening on' and 'ready in' lines show at every level (default: %(default)s)",
        )
        p.add_argument(
            "--no-access-log",
            action="store_true",
            help="no access line per HTTP request and gRPC call (peer, method/RPC, path, status, ms)",
        )
        repo = p.add_argument_group(
            "many models: a model repository (Triton's layout DIR/NAME/VERSION/, or vslim bundles)"
        )
        repo.add_argument(
            "--model-repository",
            metavar="DIR",
            help="serve every model in DIR instead of one --bundle: DIR/NAME/VERSION/ holding a bundle "
            "(Triton's layout; DIR/NAME/config.pbtxt may set that model's batching), or bundle "
            "folders as vslim-package wrote them (version 1)",
        )
        repo.add_argument(
            "--version-policy",
            default="latest:1",
            metavar="POLICY",
            help="versions served per model: latest:N, all, or specific:V[,V...]; a request without "
            "a version reaches the newest ready one (default: %(default)s)",
        )
        repo.add_argument(
            "--default-model",
            metavar="NAME",
            help="the model Paddle Serving's protocol (which names none) reaches; required when the "
            "repository holds more than one model",
        )
        repo.add_argument(
            "--model-control-mode",
            choices=["none", "explicit", "poll"],
            default="none",
            help="none: load every model at start, no load/unload; explicit: load --load-model ones, "
            "then what clients ask (POST /v2/repository/models/NAME/load, .../unload); poll: "
            "load every model and rescan DIR every --repository-poll-secs (default: %(default)s)",
        )
        repo.add_argument(
            "--load-model",
            action="append",
            default=[],
            metavar="NAME",
            help="explicit mode: load NAME at start (repeatable; '*': every model)",
        )
        repo.add_argument(
            "--repository-poll-secs",
            type=float,
            default=15.0,
            metavar="S",
            help="poll mode: seconds between rescans of DIR, > 0 (default: %(default)s)",
        )
        ray = p.add_argument_group("scale-out on a Ray cluster (needs: pip install 'vslim[ray]')")
        ray.add_argument(
            "--ray",
            metavar="ADDRESS",
            help="deploy onto a Ray cluster instead of serving here: 'local' (start a one-machine "
            "cluster), 'auto' (the cluster 'ray start' joined here) or HEAD_IP:6379",
        )
        ray.add_argument(
            "--replicas", type=int, default=1, metavar="N", help="fixed number of replicas, >= 1 (default: %(default)s)"
        )
        ray.add_argument(
            "--autoscale", metavar="MIN:MAX", help="scale between MIN and MAX replicas on load instead of --replicas"
        )
        ray.add_argument(
            "--target-ongoing-requests",
            type=float,
            default=2.0,
            metavar="N",
            help="--autoscale adds replicas above this many requests in flight per replica, > 0 (default: %(default)s)",
        )
        ray.add_argument(
            "--cpus-per-replica",
            type=float,
            default=1.0,
            metavar="CPUS",
            help="CPUs Ray reserves per replica, > 0; Paddle runs that many threads, shared by "
            "--workers (default: %(default)s)",
        )
        ray.add_argument(
            "--memory-per-replica-mb",
            type=int,
            metavar="MIB",
            help="memory Ray reserves per replica (default: 768 MiB + 3x the model files)",
        )
        ray.add_argument(
            "--max-replicas-per-node",
            type=int,
            metavar="N",
            help="spread replicas: at most this many on one node (default: no limit)",
        )
        ray.add_argument(
            "--name",
            default="vslim",
            help="Serve application name; deploying again under the same name is a rolling update "
            "(default: %(default)s)",
        )
        ray.add_argument(
            "--route-prefix",
            default="/",
            metavar="PATH",
            help="HTTP path prefix of the application (default: %(default)s)",
        )
        ray.add_argument(
            "--proxy-location",
            default="EveryNode",
            choices=["EveryNode", "HeadOnly", "Disabled"],
            help="where Ray runs its proxies: %(choices)s (default: %(default)s, every machine answers)",
        )
        ray.add_argument(
            "--ray-ingress",
            default="proxy",
            choices=["proxy", "direct"],
            help="how requests reach the replicas: 'proxy' (Ray's HTTP and gRPC proxies on --port/--grpc-port, "
            "one address for the cluster) or 'direct' (each replica listens on its own HTTP and gRPC ports, no "
            "proxy hop; put a load balancer in front; Ray's direct ingress, which a joined cluster must have "
            "been started with: RAY_SERVE_ENABLE_DIRECT_INGRESS=1 ray start ...) (default: %(default)s)",
        )
        p.add_argument(
            "--status",
            action="store_true",
            help="list the models, versions and their state of the server running at --host/--port "
            "(with --auth-token-file if it needs one), then exit; with --ray: the applications, "
            "replicas and their nodes",
        )
        ray.add_argument(
            "--ray-config",
            nargs="?",
            const="serve",
            choices=["serve", "rayservice"],
            help="print what deploys --bundle with these options, then exit: 'serve' (default) the "
            "Serve config for 'serve deploy', 'rayservice' a KubeRay RayService manifest "
            "(--bundle is the path inside the image)",
        )
        p.set_defaults(handler=serve)
    elif command == "client":
        p.description = p.description or "Classify a video through a running vslim-serve (or Paddle Serving) server."
        p.epilog = (
            "exit status: 0 classified; 2 bad flags or input, or the server refused the request; "
            "3 no server at --address"
        )
        p.add_argument(
            "--bundle",
            "--client-conf",
            dest="bundle",
            required=True,
            metavar="PATH",
            help="the bundle folder vslim-package --target serving wrote, its NAME_serving_client folder "
            "or that folder's serving_client_conf.prototxt",
        )
        p.add_argument(
            "--video", "--input-file", dest="video", required=True, metavar="FILE", help="video file to classify"
        )
        p.add_argument(
            "--address",
            default="127.0.0.1:9393",
            metavar="HOST[:PORT]",
            help="the server: HOST, HOST:PORT, [IPv6] or [IPv6]:PORT; an http(s):// prefix is allowed; "
            "without a port, 9393 (vslim-serve's default) in every protocol (default: %(default)s)",
        )
        p.add_argument(
            "--protocol",
            default="grpc",
            choices=client_registry.protocol_names(),
            help="the tensor protocols preprocess the video here and send the clip; the others send the video. "
            + "; ".join(f"{r.name}: {r.description}" for r in client_registry.rows())
            + " (one of: %(choices)s; default: %(default)s)",
        )
        p.add_argument(
            "--model",
            metavar="NAME",
            help="v2 protocols: the served model to ask, for a server of many models (default: the "
            "bundle's name); Paddle Serving's protocol reaches the server's --default-model",
        )
        p.add_argument(
            "--model-version",
            default="",
            metavar="V",
            help="v2 protocols: that version of the model (default: the newest the server has ready)",
        )
        p.add_argument(
            "--server-decode",
            action="store_true",
            help="v2 protocols: send the whole video file to the NAME_video model, which decodes it",
        )
        p.add_argument(
            "--json-tensors",
            action="store_true",
            help="v2-http: tensors as JSON instead of binary (the binary tensor data extension)",
        )
        p.add_argument(
            "--top-k",
            type=int,
            default=1,
            metavar="K",
            help="classes to print, best first (>= 1; default: %(default)s)",
        )
        p.add_argument(
            "--timeout",
            type=float,
            default=60.0,
            metavar="SECONDS",
            help="longest wait for the server's answer, in seconds (> 0; default: %(default)s)",
        )
        p.add_argument(
            "--auth-token-file",
            metavar="FILE",
            help="file holding the server's bearer token (vslim-serve --auth-token-file; default: none)",
        )
        p.add_argument(
            "--tls-ca", metavar="PEM", help="PEM certificate(s) to trust: talk TLS to the server (default: plaintext)"
        )
        p.add_argument(
            "--json",
            action="store_true",
            help='print {"address", "protocol", "predictions": [{"source", "classes", "scores", '
            "\"labels\"}]} (vslim predict --json's entries) instead of PaddleVideo's lines",
        )
        p.set_defaults(handler=client)


def register(sub) -> None:
    for name, help in (
        ("serve", "serve a bundle over gRPC and HTTP (Paddle Serving protocol)"),
        ("client", "classify a video through a running server"),
    ):
        configure(name, sub.add_parser(name, help=help, description=help))


SERVE_DESCRIPTION = """\
Serve a Paddle Serving bundle (the NAME_serving_server folder vslim-package --target serving writes) on one port:
Paddle Serving's protocol and KServe v2 (Open Inference Protocol) over gRPC and HTTP, with dynamic batching,
health, Prometheus /metrics and Swagger UI at /docs. Runs until SIGTERM/SIGINT, then drains. Logs go to stderr;
stdout stays empty."""

SERVE_EPILOG = """\
examples:
  vslim-package --target serving --model-dir int8 --out bundle    make a bundle from a model folder
  vslim-serve --bundle bundle/NAME_serving_server                 serve it on 127.0.0.1:9393
  vslim-serve --bundle B --workers 2 --max-batch-size 8           two workers, batches of up to 8
  vslim-serve --bundle B --log-level warning                      no access lines, only problems
  vslim-serve --bundle B --ray local --replicas 2                 two replicas on a local Ray cluster"""


class _ServeHelp(argparse.RawDescriptionHelpFormatter, DefaultsHelpFormatter):
    """Keeps the description's and the examples' lines as written; options still show their defaults."""


def serve(args) -> int:
    from ..errors import ConfigError

    if args.status:
        if not args.ray:
            return _server_status(args)
        from ..serving.rayserve import require_ray

        require_ray()
        from ..serving.rayserve.launcher import status

        print_json(status(args.ray))
        return 0
    if not args.bundle and not args.model_repository:
        raise ConfigError(
            "give --bundle PATH: the NAME_serving_server folder that `vslim-package --target serving "
            "--model-dir MODEL --out OUT` writes into OUT (or --model-repository DIR for many models)"
        )
    if args.ray or args.ray_config:
        return serve_on_ray(args)
    return _serve_here(args)


def _server_config(args, port: int):
    from vslim.serving.config import ServerConfig

    return ServerConfig(
        bundle=args.bundle,
        model_repository=args.model_repository,
        version_policy=args.version_policy,
        default_model=args.default_model,
        model_control_mode=args.model_control_mode,
        load_model=tuple(args.load_model),
        repository_poll_secs=args.repository_poll_secs,
        host=args.host,
        port=port,
        grpc_port=None if args.ray or args.ray_config else args.grpc_port,
        workers=args.workers,
        threads=args.threads,
        max_batch_size=args.max_batch_size,
        batch_timeout_ms=args.batch_timeout_ms,
        device=args.device,
        use_tensorrt=args.use_tensorrt,
        precision=args.precision,
        runtime=args.runtime,
        max_body_mb=args.max_body_mb,
        max_request_batch=args.max_request_batch,
        grace_seconds=args.grace_seconds,
        warmup=not args.no_warmup,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        auth_token_file=args.auth_token_file,
        allow_client_shm=args.allow_client_shm,
        log_level=args.log_level,
        access_log=not args.no_access_log,
    )


def _server_status(args) -> int:
    """``vslim-serve --status``: the running server's models (v2's repository index), as JSON on stdout."""
    from ..serving.auth import load_token
    from ..serving.protocols.v2.client import V2HttpClient

    address = f"{args.host}:{9393 if args.port is None else args.port}"
    token = load_token(args.auth_token_file) if args.auth_token_file else None
    with V2HttpClient(address, token=token) as client:
        models = client.repository_index()
        health = client.server_ready()
    print_json({"address": address, "ready": health, "models": models})
    return 0


def _serve_here(args) -> int:
    from ..serving.logs import configure_logging
    from ..serving.server import serve as run

    cfg = _server_config(args, 9393 if args.port is None else args.port).validate()
    configure_logging(cfg.log_level)
    return run(cfg)


def _print_ray_config(kind: str, cfg, local: bool) -> int:
    from ..serving.bundle import load_bundle
    from ..serving.rayserve.manifest import rayservice_yaml, serve_config_yaml

    size = 0
    if local:
        server_dir = load_bundle(cfg.server.bundle, verify=cfg.server.verify_manifest).server_dir
        size = sum(p.stat().st_size for p in server_dir.iterdir() if p.is_file())
    else:
        say(f"{cfg.server.bundle} is not on this machine: written as given, for the cluster's file system")
    print((rayservice_yaml if kind == "rayservice" else serve_config_yaml)(cfg, size), end="")
    return 0


def serve_on_ray(args) -> int:
    """``--ray`` (deploy and wait) or ``--ray-config`` (print the Serve config)."""
    from vslim.serving.errors import ServingError

    from ..serving.rayserve.config import RayServeConfig, parse_autoscale

    server = _server_config(args, 9393)
    where = args.bundle or args.model_repository
    local = Path(where).is_dir()
    if not local and not args.ray_config:
        raise ServingError(
            f"{'bundle' if args.bundle else 'model repository'} {where} does not exist here; deploying "
            "needs it on this machine and at the same path on every node"
        )
    for name in ("bundle", "model_repository", "tls_cert", "tls_key", "auth_token_file"):
        value = getattr(server, name)
        if value and Path(value).exists():  # replicas on other nodes resolve paths from /, not our cwd
            setattr(server, name, str(Path(value).resolve()))
    cfg = RayServeConfig(
        server=server,
        address=args.ray or "local",
        name=args.name,
        replicas=args.replicas,
        autoscale=parse_autoscale(args.autoscale) if args.autoscale else None,
        target_ongoing_requests=args.target_ongoing_requests,
        cpus_per_replica=args.cpus_per_replica,
        memory_per_replica_mb=args.memory_per_replica_mb,
        max_replicas_per_node=args.max_replicas_per_node,
        http_host=args.host,
        http_port=8000 if args.port is None else args.port,
        grpc_port=9000 if args.grpc_port is None else args.grpc_port,
        route_prefix=args.route_prefix,
        proxy_location=args.proxy_location,
        ingress=args.ray_ingress,
    ).validate()
    if args.ray_config:
        return _print_ray_config(args.ray_config, cfg, local)
    from ..serving.rayserve import require_ray

    require_ray()
    from ..serving.rayserve.launcher import run

    return run(cfg)


def client(args) -> int:
    from ..errors import ConfigError, DataError
    from ..serving.auth import load_token
    from ..serving.client import ClientConfig, normalize_address

    if not Path(args.video).is_file():
        raise DataError(f"video {args.video} does not exist; give a video file with --video")
    if args.top_k < 1:
        raise ConfigError(f"--top-k must be >= 1, got {args.top_k}")
    if not args.timeout > 0:
        raise ConfigError(f"--timeout must be > 0 seconds, got {args.timeout}")
    v2 = args.protocol.startswith("v2-")
    if (args.server_decode and not v2) or (args.json_tensors and args.protocol != "v2-http"):
        flag = "--server-decode" if args.server_decode and not v2 else "--json-tensors"
        raise ConfigError(
            f"{flag} applies to {'v2-http' if flag == '--json-tensors' else 'v2-http and v2-grpc'} "
            f"only; with Paddle Serving use --protocol video-file to let the server decode"
        )
    if (args.model or args.model_version) and not v2:
        raise ConfigError(
            f"{'--model' if args.model else '--model-version'} applies to --protocol v2-http and v2-grpc: "
            "Paddle Serving's protocol names no model, the server's --default-model answers it"
        )
    address = normalize_address(args.address)
    conf = ClientConfig.load(args.bundle)
    security = dict(token=load_token(args.auth_token_file) if args.auth_token_file else None, tls_ca=args.tls_ca)
    top = _classify(args, address, conf, security)
    if args.protocol == "video" and len(top.classes) < min(args.top_k, len(conf.meta.labels) if conf.meta else 1):
        say(
            f"note: the server answered {len(top.classes)} class(es) of the {args.top_k} asked for: its "
            "/video/prediction follows PaddleVideo's pipeline (top-1); --protocol video-file gives top-k"
        )
    entry = top.entry(args.video)
    if args.json:
        print_json({"address": address, "protocol": args.protocol, "predictions": [entry]})
    else:
        print(_paddlevideo_text(entry))
    return 0


def _classify(args, address: str, conf, security: dict):
    """The top-k of ``args.video`` over ``args.protocol``."""
    from ..serving.client import classify_video, make_client

    options = {}
    if args.protocol.startswith("v2-"):
        options = {"model": args.model, "version": args.model_version}
        if args.protocol == "v2-http":
            options["binary"] = not args.json_tensors
    with make_client(args.protocol, address, conf, args.timeout, **security, **options) as client:
        if args.protocol == "video-file":
            return client.classify_file(args.video, args.top_k)
        if args.protocol == "video":
            from ..data.decode import VideoReader

            with VideoReader(args.video) as reader:
                frames = reader.read(range(reader.num_frames))
            return client.classify_frames(frames, args.top_k)
        if args.server_decode:
            return client.classify_files([args.video], args.top_k)[0]
        return classify_video(client, args.video, args.top_k)


def _paddlevideo_text(entry: dict) -> str:
    """PaddleVideo's lines, as ``vslim predict`` prints them, and a ``note:`` line for a padded clip."""
    from dataclasses import fields

    from ..predict import format_paddlevideo
    from ..topk import TopK

    known = {f.name for f in fields(TopK)}
    text = format_paddlevideo(TopK(**{k: v for k, v in entry.items() if k in known}))
    note = (entry.get("sampling") or {}).get("note")
    return f"{text}\nnote: {note}" if note and note not in text else text
