"""``vslim-serve --ray``: deploy a bundle onto a Ray cluster, report it, remove it on SIGTERM.

The command is a Ray *driver*: it connects (or starts a one-machine cluster for
``--ray local``), starts Serve's proxies if they are not running, deploys the
application and waits. Serve applications outlive their driver, so stopping is
explicit: SIGTERM/Ctrl-C deletes the application (and, for ``local``, the
cluster). Deploying again under the same ``--name`` from another shell is a
rolling update; the first driver sees its application replaced and exits
without deleting it.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vslim.serving.errors import ServingError

from ..repository import startup_bundles
from .config import DEPLOYMENT, DIRECT_INGRESS, DIRECT_INGRESS_ENV, RayServeConfig

if TYPE_CHECKING:
    from ray.serve._private.client import ServeControllerClient

# passed on to the replicas' processes when set in the driver's environment
FORWARDED_ENV = ("VSLIM_INJECT_FAULTS", "GLOG_minloglevel", "FLAGS_use_mkldnn")


def _log(message: str) -> None:
    print(f"vslim-serve: {message}", file=sys.stderr, flush=True)


def connect(address: str, log: Callable[[str], None] = _log, ingress: str = "proxy") -> None:
    """Join the cluster at ``address`` (``auto``: the one ``ray start`` made here), or start one for ``local``.

    ``ingress`` ``direct`` on a cluster started here puts Ray's direct-ingress switch in its environment (every
    Serve process reads it at import); a joined cluster has it from ``ray start``'s environment or not at all."""
    import ray

    if ray.is_initialized():
        return
    if address == "local":  # the cluster started here runs the ingress asked for, whatever this shell had set
        if ingress == DIRECT_INGRESS:
            os.environ[DIRECT_INGRESS_ENV] = "1"
        else:
            os.environ.pop(DIRECT_INGRESS_ENV, None)
    quiet: dict[str, Any] = {"log_to_driver": False, "logging_level": "ERROR", "configure_logging": True}
    try:
        if address == "local":
            log("starting a one-machine Ray cluster (--ray local)")
            # "local", not None: None would join a cluster 'ray start' left running here (or RAY_ADDRESS's)
            ray.init(address="local", **quiet)
        else:
            ray.init(address=address, **quiet)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise ServingError(
            f"cannot join the Ray cluster at {address!r}: {exc}. Start one with "
            "'ray start --head' (then --ray auto or --ray HEAD_IP:6379), or use --ray local"
        ) from exc


def _bundle_bytes(server_dir: Path) -> int:
    return sum(p.stat().st_size for p in server_dir.iterdir() if p.is_file())


def application(cfg: RayServeConfig, stamp: dict[str, str] | None = None):
    """The bound Serve application of ``cfg``; ``stamp`` marks who deployed it (its ``user_config``)."""
    from .replica import Deployment

    bundles = startup_bundles(cfg.server)
    env = {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}
    if env:
        runtime_env = dict(cfg.runtime_env)
        runtime_env["env_vars"] = {**runtime_env.get("env_vars", {}), **env}
        cfg.runtime_env = runtime_env
    options = cfg.deployment_options(sum(_bundle_bytes(b.server_dir) for b in bundles))
    if stamp:
        options["user_config"] = stamp
    return Deployment.options(**options).bind(cfg.replica_args())


def start_serve(cfg: RayServeConfig, log: Callable[[str], None] = _log) -> None:
    """Start Serve's HTTP and gRPC proxies with ``cfg``'s ports, unless Serve already runs on the cluster."""
    from ray import serve
    from ray.serve.config import HTTPOptions, gRPCOptions

    from .ingress import SERVICER_FUNCTIONS

    if _serve_running():
        http_port, grpc_port = proxy_ports()
        if (http_port, grpc_port) != (cfg.http_port, cfg.grpc_port):
            log(
                f"Serve already runs on this cluster with its proxies on HTTP {http_port} and gRPC {grpc_port}; "
                "those stay (stop Serve with 'serve shutdown' to change them)"
            )
            cfg.http_port, cfg.grpc_port = http_port, grpc_port
        return
    tls = cfg.server
    http = HTTPOptions(host=cfg.http_host, port=cfg.http_port, ssl_certfile=tls.tls_cert, ssl_keyfile=tls.tls_key)
    grpc_options = gRPCOptions(port=cfg.grpc_port, grpc_servicer_functions=list(SERVICER_FUNCTIONS))
    serve.start(proxy_location=cfg.proxy_location, http_options=http, grpc_options=grpc_options)


def _serve_client() -> ServeControllerClient:
    """The running Serve controller's client (Ray raises RayServeException when none runs)."""
    from ray.serve.context import _get_global_client

    client = _get_global_client()
    if client is None:  # only with raise_if_no_controller_running=False
        raise ServingError("no Ray Serve controller is running")
    return client


def proxy_ports() -> tuple[int, int]:
    """The ports Serve's running HTTP and gRPC proxies listen on (set when Serve started, whoever started it)."""
    import ray

    controller = _serve_client()._controller
    http, grpc_options = ray.get([controller.get_http_config.remote(), controller.get_grpc_config.remote()])
    return http.port, grpc_options.port


def _serve_running() -> bool:
    import ray
    from ray.serve._private.constants import SERVE_CONTROLLER_NAME, SERVE_NAMESPACE

    try:
        ray.get_actor(SERVE_CONTROLLER_NAME, namespace=SERVE_NAMESPACE)
        return True
    except ValueError:
        return False


def deploy(cfg: RayServeConfig, log: Callable[[str], None] = _log) -> str:
    """Deploy (or roll ``cfg.name`` over to) the bundle; returns when every replica is up. Its deploy id."""
    from ray import serve

    stamp = {"deploy_id": uuid.uuid4().hex, "deployed_by": f"vslim-serve pid {os.getpid()} on {socket.gethostname()}"}
    app = application(cfg, stamp)
    updating = deployment_id(cfg.name) is not None
    log(
        f"{'rolling update of' if updating else 'deploying'} application {cfg.name!r}: "
        f"{_what(cfg)}, {_replicas_text(cfg)}"
    )
    try:
        serve.run(app, name=cfg.name, route_prefix=cfg.route_prefix, blocking=False)
    except RuntimeError as exc:
        if not updating:  # leave nothing half-deployed; a failed update keeps what served before
            _delete(cfg.name, cfg.server.grace_seconds + 30, log)
        raise ServingError(
            f"Ray could not start the replicas of {cfg.name!r}: {exc}. The bundle path must exist "
            "on every node (shared storage or the image); see 'ray logs' for the replica's "
            "error"
        ) from exc
    return stamp["deploy_id"]


def _what(cfg: RayServeConfig) -> str:
    return Path(cfg.server.bundle).name if cfg.server.bundle else f"every model of {cfg.server.model_repository}"


def _replicas_text(cfg: RayServeConfig) -> str:
    size = f"{cfg.cpus_per_replica:g} CPU(s), {cfg.server.workers or 1} worker(s) of {cfg.threads} thread(s) each"
    if cfg.autoscale:
        return (
            f"{cfg.autoscale[0]}-{cfg.autoscale[1]} replicas (autoscaling at {cfg.target_ongoing_requests:g} "
            f"ongoing requests per replica), {size}"
        )
    return f"{cfg.replicas} replica(s), {size}"


def endpoints(cfg: RayServeConfig) -> dict[str, str]:
    scheme = "https" if cfg.server.tls_cert else "http"
    host = "127.0.0.1" if cfg.http_host in ("0.0.0.0", "::") else cfg.http_host
    prefix = cfg.route_prefix.rstrip("/")
    return {"http": f"{scheme}://{host}:{cfg.http_port}{prefix}", "grpc": f"{host}:{cfg.grpc_port}"}


def _targets(cfg: RayServeConfig) -> tuple[dict[str, list[str]], bool]:
    """Where Serve's controller sends requests for ``cfg.name`` (``{"http": [URL], "grpc": [ADDR]}``), and whether
    those are the proxies (False: Ray's direct ingress is on, the targets are replicas' own ports)."""
    groups = _target_groups(cfg.name)
    scheme, prefix = "https" if cfg.server.tls_cert else "http", cfg.route_prefix.rstrip("/")
    found: dict[str, list[str]] = {"http": [], "grpc": []}
    proxies = False
    for group in groups:
        kind = "grpc" if str(getattr(group.protocol, "value", group.protocol)).lower() == "grpc" else "http"
        for target in group.targets:
            proxies |= target.port in (cfg.http_port, cfg.grpc_port)
            # a replica binds --host like the HTTP proxy would: loopback stays loopback (Ray reports the node's IP)
            host = cfg.http_host if cfg.http_host in ("127.0.0.1", "localhost", "::1") else target.ip
            found[kind].append(
                f"{scheme}://{host}:{target.port}{prefix}" if kind == "http" else f"{host}:{target.port}"
            )
    return {k: sorted(v) for k, v in found.items()}, proxies


def direct_endpoints(cfg: RayServeConfig) -> dict[str, list[str]]:
    """Every running replica's own HTTP URL and gRPC address (Ray's direct ingress), from Serve's controller.

    Raises when the cluster answers with its proxies instead: direct ingress is off in its environment."""
    found, proxies = _targets(cfg)
    if proxies or not found["http"]:
        raise ServingError(
            f"--ray-ingress direct: the cluster at {cfg.address} routes through its proxies, because "
            f"{DIRECT_INGRESS_ENV}=1 was not in its environment when it started. Start every node with "
            f"'{DIRECT_INGRESS_ENV}=1 ray start ...' (or use --ray local), or use --ray-ingress proxy"
        )
    return found


def run(cfg: RayServeConfig, log: Callable[[str], None] = _log) -> int:
    """Deploy, print the endpoints, block until SIGTERM/SIGINT (or a takeover), remove the application."""
    from ray import serve

    cfg.validate()
    startup_bundles(cfg.server)  # fail before touching the cluster
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    connect(cfg.address, log, cfg.ingress)
    for sig in (signal.SIGTERM, signal.SIGINT):  # ray.init may install its own
        signal.signal(sig, lambda *_: stop.set())
    owned = False
    try:
        start_serve(cfg, log)
        if cfg.server.tls_cert:
            log(
                f"warning: Ray's gRPC proxy has no TLS option: gRPC on port {cfg.grpc_port} is plaintext "
                "(HTTP uses the certificate); keep it on a private network or put a TLS proxy in front"
            )
        deployed: str | None = deploy(cfg, log)
        owned = True
        log(f"ready: application {cfg.name!r} on {status_line(cfg.name)}")
        if cfg.ingress == DIRECT_INGRESS:
            direct = direct_endpoints(cfg)
            log(
                "direct ingress, no proxy: each replica answers on its own ports (a load balancer in front spreads "
                f"the load; --status lists them): HTTP {' '.join(direct['http'])}   gRPC {' '.join(direct['grpc'])}"
            )
            ep = {k: ",".join(v) for k, v in direct.items()}
        else:
            ep = endpoints(cfg)
            found, proxies = _targets(cfg)
            if not proxies and (found["http"] or found["grpc"]):
                log(
                    f"warning: the cluster at {cfg.address} runs Ray's direct ingress ({DIRECT_INGRESS_ENV}=1): "
                    "no proxy listens on the ports below; deploy with --ray-ingress direct to get the replicas' ports"
                )
            log(
                f"HTTP (Paddle Serving JSON/proto, video, v2): {ep['http']}   gRPC (GeneralModelService, "
                f"GRPCInferenceService): {ep['grpc']}"
            )
        print(f"http={ep['http']} grpc={ep['grpc']}", flush=True)
        while not stop.wait(2.0):
            now = deployment_id(cfg.name)
            if now == deployed:
                continue
            change = "removed" if now is None else "redeployed (rolling update)"
            owned, deployed = False, now
            if cfg.address != "local":
                log(f"application {cfg.name!r} was {change} by another command; leaving it to that one")
                return 0
            log(
                f"application {cfg.name!r} was {change} by another command; this process keeps the local "
                "cluster up until SIGTERM/Ctrl-C"
            )
        if owned or cfg.address == "local":
            log(f"removing application {cfg.name!r} (replicas finish their requests first)")
            owned = False
            _delete(cfg.name, cfg.server.grace_seconds + 30, log)
        log("stopped")
        return 0
    finally:
        if owned:  # an error after deploying: do not leave the application behind
            _delete(cfg.name, cfg.server.grace_seconds + 30, log)
        if cfg.address == "local":
            serve.shutdown()
            import ray

            ray.shutdown()


def _delete(name: str, timeout: float, log: Callable[[str], None]) -> bool:
    """Delete the application, giving up after ``timeout`` (a cluster that lost its head never answers)."""
    from ray import serve

    worker = threading.Thread(target=serve.delete, args=(name,), daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        log(f"the cluster did not confirm removing {name!r} within {timeout:.0f}s; check with --status")
        return False
    return True


def _details() -> dict[str, Any]:
    """What Serve's controller knows of every application (what ``serve status`` and Ray's dashboard show)."""
    return _serve_client().get_serve_details()


def replica_nodes(name: str) -> list[dict[str, Any]]:
    """Each replica of application ``name``: id, state, process and the node it runs on."""
    app = _details().get("applications", {}).get(name)
    if not app:
        return []
    return [
        {k: r.get(k) for k in ("replica_id", "state", "node_id", "node_ip", "pid")}
        for d in app["deployments"].values()
        for r in d["replicas"]
    ]


def deployment_id(name: str) -> str | None:
    """The id the last ``vslim-serve --ray`` stamped on ``name`` (its user_config); None once it is gone."""
    app = _details().get("applications", {}).get(name)
    if not app or DEPLOYMENT not in app["deployments"]:
        return None
    config = app["deployments"][DEPLOYMENT]["deployment_config"].get("user_config") or {}
    return config.get("deploy_id", "")


def status(address: str) -> dict[str, Any]:
    """Applications, deployments, replica states and the nodes replicas run on."""
    connect(address)
    if not _serve_running():
        return {"serve": "not running", "applications": {}}
    out: dict[str, Any] = {"applications": {}}
    for name, app in _details().get("applications", {}).items():
        out["applications"][name] = {
            "status": app["status"],
            "message": app["message"],
            "route_prefix": app["route_prefix"],
            "ingress": _ingress_targets(name),
            "deployments": {
                d: {
                    "status": dep["status"],
                    "target_replicas": dep["target_num_replicas"],
                    "deployed_by": (dep["deployment_config"].get("user_config") or {}).get("deployed_by"),
                    "replicas": [
                        {k: r.get(k) for k in ("replica_id", "state", "node_ip", "node_id", "pid")}
                        for r in dep["replicas"]
                    ],
                }
                for d, dep in app["deployments"].items()
            },
        }
    return out


def _target_groups(name: str) -> list:
    """Serve's controller's target groups of application ``name``: the proxies, or with direct ingress each
    replica's own ports (``TargetGroup``: protocol, targets with ip and port)."""
    import ray

    return ray.get(_serve_client()._controller.get_target_groups.remote(app_name=name))


def _ingress_targets(name: str) -> list[str]:
    """Where requests for ``name`` enter, as ``PROTOCOL ip:port`` lines (``--status``)."""
    return sorted(
        f"{getattr(g.protocol, 'value', g.protocol)} {t.ip}:{t.port}" for g in _target_groups(name) for t in g.targets
    )


def status_line(name: str) -> str:
    replicas = [r for r in replica_nodes(name) if r["state"] == "RUNNING"]
    return f"{len(replicas)} replica(s) on {len({r['node_id'] for r in replicas})} node(s)"
