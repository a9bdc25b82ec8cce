"""Serving commands: ``vslim serve`` (``vslim-serve``) and ``vslim client`` (``vslim-client``)."""
from __future__ import annotations

import argparse

from pathlib import Path

from .common import print_json, say


def configure(command: str, p: argparse.ArgumentParser) -> None:
    if command == "serve":
        p.add_argument("--bundle", help="the NAME_serving_server folder (required unless --status)")
        p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
        p.add_argument("--port", type=int, default=None,
                       help="one port for gRPC and HTTP (default 9393); with --ray: Ray's HTTP proxy (default 8000)")
        p.add_argument("--workers", type=int, default=1, help="inference workers (predictor clones)")
        p.add_argument("--threads", type=int, default=2, help="CPU threads per worker")
        p.add_argument("--max-batch-size", type=int, default=1, help="dynamic batching: largest merged batch "
                       "(1 = off)")
        p.add_argument("--batch-timeout-ms", type=float, default=2.0,
                       help="dynamic batching: longest a request waits for others")
        p.add_argument("--device", choices=["cpu", "gpu"], default="cpu")
        p.add_argument("--use-tensorrt", action="store_true")
        p.add_argument("--runtime", choices=["auto", "paddle", "openvino", "onnxruntime"], default="auto",
                       help="CPU runtime: auto (default) takes what vslim-package measured fastest on the packaging host "
                            "(runtime.json; paddle when absent, or when the recorded runtime is not installed), or "
                            "paddle, openvino, onnxruntime")
        p.add_argument("--precision", choices=["auto", "fp32", "fp16", "bf16", "int8"], default="auto",
                       help="auto: the model's own; bf16 needs a CPU with AVX-512 BF16 or AMX")
        p.add_argument("--max-body-mb", type=int, default=64, help="largest request body (default 64 MiB)")
        p.add_argument("--max-request-batch", type=int, default=64, help="largest batch one request may send")
        p.add_argument("--grace-seconds", type=float, default=30.0, help="how long SIGTERM waits for requests")
        p.add_argument("--no-warmup", action="store_true",
                       help="report ready without first running every batch size (faster start, slow first batches)")
        p.add_argument("--tls-cert", help="PEM certificate: serve gRPC and HTTP over TLS")
        p.add_argument("--tls-key", help="PEM private key of --tls-cert")
        p.add_argument("--auth-token-file", help="file holding a bearer token required on every endpoint but health")
        ray = p.add_argument_group("scale-out on a Ray cluster (needs: pip install 'vslim[ray]')")
        ray.add_argument("--ray", metavar="ADDRESS",
                         help="deploy onto a Ray cluster instead of serving here: 'local' (start a one-machine "
                              "cluster), 'auto' (the cluster 'ray start' joined here) or HEAD_IP:6379")
        ray.add_argument("--replicas", type=int, default=1, help="fixed number of replicas (default 1)")
        ray.add_argument("--autoscale", metavar="MIN:MAX",
                         help="scale between MIN and MAX replicas on load instead of --replicas")
        ray.add_argument("--target-ongoing-requests", type=float, default=2.0,
                         help="--autoscale adds replicas above this many requests in flight per replica (default 2)")
        ray.add_argument("--cpus-per-replica", type=float, default=1.0,
                         help="CPUs Ray reserves per replica; Paddle runs that many threads, shared by "
                              "--workers (default 1)")
        ray.add_argument("--memory-per-replica-mb", type=int,
                         help="memory Ray reserves per replica (default: 768 MiB + 3x the model files)")
        ray.add_argument("--max-replicas-per-node", type=int,
                         help="spread replicas: at most this many on one node (default: no limit)")
        ray.add_argument("--name", default="vslim",
                         help="Serve application name; deploying again under the same name is a rolling update "
                              "(default vslim)")
        ray.add_argument("--grpc-port", type=int, default=9000,
                         help="Ray's gRPC proxy port; it cannot share --port (default 9000)")
        ray.add_argument("--route-prefix", default="/", help="HTTP path prefix of the application (default /)")
        ray.add_argument("--proxy-location", default="EveryNode", choices=["EveryNode", "HeadOnly", "Disabled"],
                         help="where Ray runs its proxies (default EveryNode: every machine answers)")
        ray.add_argument("--status", action="store_true",
                         help="with --ray: list applications, replicas and their nodes, then exit")
        ray.add_argument("--ray-config", nargs="?", const="serve", choices=["serve", "rayservice"],
                         help="print what deploys --bundle with these options, then exit: 'serve' (default) the "
                              "Serve config for 'serve deploy', 'rayservice' a KubeRay RayService manifest "
                              "(--bundle is the path inside the image)")
        p.set_defaults(handler=serve)
    elif command == "client":
        p.add_argument("--bundle", required=True, help="the NAME_serving_client folder")
        p.add_argument("--video", required=True, help="video file to classify")
        p.add_argument("--address", default="127.0.0.1:9393", help="server host:port")
        p.add_argument("--protocol", default="grpc",
                       choices=["grpc", "http", "http-proto", "v2-http", "v2-grpc", "video", "video-file"],
                       help="Paddle Serving: grpc / http (JSON) / http-proto, and the Open Inference Protocol "
                            "(KServe v2): v2-http / v2-grpc, all preprocessing here and sending the clip; "
                            "video: post frames to /video/prediction; video-file: post the file to /video/classify "
                            "(default grpc)")
        p.add_argument("--server-decode", action="store_true",
                       help="v2 protocols: send the whole video file to the NAME_video model, which decodes it")
        p.add_argument("--json-tensors", action="store_true",
                       help="v2-http: tensors as JSON instead of binary (the binary tensor data extension)")
        p.add_argument("--top-k", type=int, default=5)
        p.add_argument("--timeout", type=float, default=60.0)
        p.add_argument("--auth-token-file", help="file holding the server's bearer token")
        p.add_argument("--tls-ca", help="PEM certificate(s) to trust: talk TLS to the server")
        p.add_argument("--json", action="store_true")
        p.set_defaults(handler=client)


def register(sub) -> None:
    for name, help in (("serve", "serve a bundle over gRPC and HTTP (Paddle Serving protocol)"),
                       ("client", "classify a video through a running server")):
        configure(name, sub.add_parser(name, help=help, description=help))


def serve(args) -> int:
    from ..errors import ConfigError

    if args.status:
        if not args.ray:
            raise ConfigError("--status reports a Ray deployment: give --ray ADDRESS (e.g. --ray auto)")
        from ..serving.rayserve import require_ray

        require_ray()
        from ..serving.rayserve.launcher import status

        print_json(status(args.ray))
        return 0
    if not args.bundle:
        raise ConfigError("give --bundle NAME_serving_server (made by: vslim-package --target serving)")
    if args.ray or args.ray_config:
        return serve_on_ray(args)
    return _serve_here(args)


def _server_config(args, port: int):
    from vslim.serving.config import ServerConfig

    return ServerConfig(bundle=args.bundle, host=args.host, port=port, workers=args.workers, threads=args.threads,
                       max_batch_size=args.max_batch_size, batch_timeout_ms=args.batch_timeout_ms,
                       device=args.device, use_tensorrt=args.use_tensorrt, precision=args.precision,
                       runtime=args.runtime, max_body_mb=args.max_body_mb, max_request_batch=args.max_request_batch,
                       grace_seconds=args.grace_seconds, warmup=not args.no_warmup, tls_cert=args.tls_cert,
                       tls_key=args.tls_key, auth_token_file=args.auth_token_file)


def _serve_here(args) -> int:
    from ..serving.server import serve as run

    return run(_server_config(args, 9393 if args.port is None else args.port))


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
    local = Path(args.bundle).is_dir()
    if not local and not args.ray_config:
        raise ServingError(f"bundle {args.bundle} does not exist here; deploying needs it on this machine and at "
                           "the same path on every node")
    for name in ("bundle", "tls_cert", "tls_key", "auth_token_file"):
        value = getattr(server, name)
        if value and Path(value).exists():  # replicas on other nodes resolve paths from /, not our cwd
            setattr(server, name, str(Path(value).resolve()))
    cfg = RayServeConfig(server=server, address=args.ray or "local", name=args.name, replicas=args.replicas,
                         autoscale=parse_autoscale(args.autoscale) if args.autoscale else None,
                         target_ongoing_requests=args.target_ongoing_requests, cpus_per_replica=args.cpus_per_replica,
                         memory_per_replica_mb=args.memory_per_replica_mb,
                         max_replicas_per_node=args.max_replicas_per_node, http_host=args.host,
                         http_port=8000 if args.port is None else args.port, grpc_port=args.grpc_port,
                         route_prefix=args.route_prefix, proxy_location=args.proxy_location).validate()
    if args.ray_config:
        return _print_ray_config(args.ray_config, cfg, local)
    from ..serving.rayserve import require_ray

    require_ray()
    from ..serving.rayserve.launcher import run

    return run(cfg)


def client(args) -> int:
    from pathlib import Path

    from ..errors import DataError
    from ..serving.client import ClientConfig, VideoEndpointClient, classify_video, make_client

    if not Path(args.video).is_file():
        raise DataError(f"video {args.video} does not exist")
    from ..serving.auth import load_token

    security = dict(token=load_token(args.auth_token_file) if args.auth_token_file else None, tls_ca=args.tls_ca)
    v2 = args.protocol.startswith("v2-")
    if (args.server_decode and not v2) or (args.json_tensors and args.protocol != "v2-http"):
        from ..errors import ConfigError

        flag = "--server-decode" if args.server_decode and not v2 else "--json-tensors"
        raise ConfigError(f"{flag} applies to {'v2-http' if flag == '--json-tensors' else 'v2-http and v2-grpc'} "
                          f"only; with Paddle Serving use --protocol video-file to let the server decode")
    if v2:
        from ..serving.protocols.v2.client import V2GrpcClient, V2HttpClient

        conf = ClientConfig.load(args.bundle)
        if args.protocol == "v2-http":
            client = V2HttpClient(args.address, conf, args.timeout, binary=not args.json_tensors, **security)
        else:
            client = V2GrpcClient(args.address, conf, args.timeout, **security)
        with client:
            top = client.classify_files([args.video], args.top_k)[0] if args.server_decode else \
                classify_video(client, args.video, args.top_k)
    elif args.protocol in ("video", "video-file"):
        endpoint = VideoEndpointClient(args.address, args.timeout, **security)
        if args.protocol == "video-file":
            top = endpoint.classify_file(args.video, args.top_k)
        else:
            from ..data.decode import VideoReader

            with VideoReader(args.video) as reader:
                frames = reader.read(range(reader.num_frames))
            answer = endpoint.predict_frames(frames)
            print_json(answer) if args.json else print(f"{args.video}: {dict(zip(answer['key'], answer['value']))}")
            return 0
    else:
        with make_client(args.protocol, args.address, ClientConfig.load(args.bundle), args.timeout, **security) as c:
            top = classify_video(c, args.video, args.top_k)
    if args.json:
        print_json({"video": str(args.video), "protocol": args.protocol, "classes": top.classes,
                    "scores": top.scores, "labels": top.labels})
    else:
        print(f"Current video file: {args.video}")
        for j, (cid, score, label) in enumerate(zip(top.classes, top.scores, top.labels), start=1):
            print(f"\ttop-{j} class: {cid}\n\ttop-{j} score: {score}\n\ttop-{j} label: {label}")
    return 0
