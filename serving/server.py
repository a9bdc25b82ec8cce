"""``vslim-serve``: a bundle, or a repository of models, served over gRPC and HTTP on one port (or one each,
with ``--grpc-port``), until SIGTERM.

Start-up order: verify the bundle (a changed or missing file refuses to start) or scan
the repository, listen (health says 503 "loading"), load the models, then report ready.
SIGTERM/SIGINT drain: health turns NOT_SERVING, the port stops accepting, in-flight
requests finish (up to ``grace_seconds``), queued inference completes, exit 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import signal
import ssl
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import uvicorn

from vslim.inference.program import framework_pb2
from vslim.inference.runtimes import open_predictor
from vslim.textnum import whole_number

from .auth import load_token
from .bundle import ServingBundle, load_bundle
from .config import ServerConfig
from .engine import InferenceEngine
from .errors import ServingError
from .grpc_server import make_grpc_server
from .http_app import make_http_app
from .listeners import listener_for
from .logs import LOGGER, GrpcAccessLog
from .prometheus import ServerMetrics
from .protocols import frontends
from .repository import ModelRepository, ModelSource, poll_forever
from .service import Batching, ModelService
from .signature import Limits


class _QuietUvicorn(uvicorn.Server):
    """uvicorn without its own signal handling: the vslim server owns SIGTERM."""

    @contextlib.contextmanager
    def capture_signals(self):
        yield

    def install_signal_handlers(self) -> None:  # older uvicorn
        pass


def _log(message: str) -> None:
    """A start-up or shutdown line on stderr, at every ``--log-level``: tools wait for "listening on" and "ready in".

    A ``warning: ...`` line is printed only while the ``vslim.serving`` logger lets
    warnings through (``--log-level error`` hides it).
    """
    if message.startswith("warning: ") and not logging.getLogger(LOGGER).isEnabledFor(logging.WARNING):
        return
    print(f"vslim-serve: {message}", file=sys.stderr, flush=True)


def _tls_context(cfg: ServerConfig) -> ssl.SSLContext | None:
    if not cfg.tls_cert:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        ctx.load_cert_chain(cfg.tls_cert, cfg.tls_key)
    except (ssl.SSLError, OSError) as exc:
        raise ServingError(f"cannot load the TLS certificate {cfg.tls_cert} / key {cfg.tls_key}: {exc}") from exc
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    return ctx


FAULTS = {
    "inference_error_every": "every N-th inference run fails",
    "inference_delay_ms": "every inference run first sleeps N ms (in-flight requests for drain tests)",
}


def injected_faults() -> dict[str, int]:
    """``VSLIM_INJECT_FAULTS=KEY=N[,KEY=N]`` (chaos and drain tests): ``inference_error_every`` makes every N-th
    inference run fail, ``inference_delay_ms`` makes every run take N ms longer."""
    spec = os.environ.get("VSLIM_INJECT_FAULTS", "")
    faults: dict[str, int] = {}
    for part in filter(None, spec.split(",")):
        key, _, value = part.partition("=")
        number = whole_number(value)
        if key not in FAULTS or number is None or number < 1:
            raise ServingError(
                f"VSLIM_INJECT_FAULTS={spec!r} is not understood; use "
                f"{' and/or '.join(k + '=N' for k in FAULTS)}, comma-separated"
            )
        faults[key] = number
    return faults


def is_loopback(host: str) -> bool:
    if host in ("localhost",):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def make_service(
    cfg: ServerConfig,
    bundle: ServingBundle,
    metrics: ServerMetrics | None = None,
    name: str | None = None,
    version: str = "1",
) -> ModelService:
    """A model as ``cfg`` limits and batches it, not yet loaded (health says "loading")."""
    cfg = cfg.for_bundle(bundle.server_dir)
    max_body = cfg.max_body_mb << 20
    return ModelService(
        bundle,
        metrics or ServerMetrics(),
        Limits(max_batch=cfg.max_request_batch, max_elements=max_body),
        max_body,
        Batching(cfg.max_batch_size, cfg.batch_timeout_ms, cfg.split[0], cfg.device),
        name=name,
        version=version,
    )


def start_engine(cfg: ServerConfig, service: ModelService, log: Callable[[str], None] = _log) -> InferenceEngine:
    """Load the predictor, start and warm the engine, and mark ``service`` ready (blocking).

    vslim-serve and every Ray replica start their models here, so both serve with the
    same engine, batching and fault injection.
    """
    bundle = service.bundle
    cfg = cfg.for_bundle(bundle.server_dir)
    predictor = open_predictor(
        bundle.server_dir, cfg.predictor_config(), bundle.info, warn=lambda m: log(f"warning: {m}")
    )
    warmup = list(range(1, cfg.max_batch_size + 1)) if cfg.warmup else []
    if warmup:
        log(f"warming up batch sizes 1-{cfg.max_batch_size} on {cfg.split[0]} worker(s)")
    faults = injected_faults()
    for key, value in faults.items():
        log(f"FAULT INJECTION ON: {FAULTS[key].replace('N', str(value), 1)} (VSLIM_INJECT_FAULTS)")
    engine = InferenceEngine(
        predictor,
        cfg.split[0],
        cfg.max_batch_size,
        cfg.batch_timeout_ms,
        service.observe_batch,
        warmup,
        faults.get("inference_error_every", 0),
        faults.get("inference_delay_ms", 0) / 1000,
    )
    engine.wait_warm()
    service.engine = engine
    service.metrics.ready.set(1)
    return engine


def open_model(
    cfg: ServerConfig, source: ModelSource, metrics: ServerMetrics, log: Callable[[str], None] = _log
) -> ModelService:
    """Verify a repository model's bundle and start its engine (blocking): the repository's opener."""
    bundle = load_bundle(source.server_dir, verify=cfg.verify_manifest)
    if bundle.manifest is None and cfg.verify_manifest:
        log(f"warning: {source.server_dir} has no vslim_manifest.json; its files cannot be verified")
    service = make_service(cfg, bundle, metrics, name=source.name, version=str(source.version))
    start_engine(cfg, service, log)
    return service


def _describe(service: ModelService) -> str:
    if service.engine is None:  # only loaded models are described
        raise ServingError(f"model {service.name} version {service.version} has no engine to describe")
    b, predictor = service.batching, service.engine.predictor
    batching = f"batching up to {b.max_batch_size} within {b.timeout_ms} ms" if b.max_batch_size > 1 else "no batching"
    threads = getattr(getattr(predictor, "config", None), "threads", None)
    split = f"{b.workers} worker(s)" + (f" x {threads} thread(s)" if threads else "")
    return f"{predictor.runtime} {predictor.precision} on {b.device}, {split}, {batching}"


@dataclass
class RunningServer:
    """Handles of a started server (for embedding it, e.g. in the demo or tests)."""

    port: int  # the shared port, or HTTP's with --grpc-port
    service: ModelService | None  # the first model served (the only one of a --bundle)
    stop: Callable[[], object]
    repository: ModelRepository | None = None
    grpc_port: int | None = None  # == port unless --grpc-port split the transports


# How long gRPC may still write answers once every admitted request is answered (see _drain).
GRPC_FINAL_GRACE = 2.0


async def run_server(
    cfg: ServerConfig, on_ready: Callable[[RunningServer], None] | None = None, install_signals: bool = True
) -> int:
    cfg.validate()
    logging.getLogger(LOGGER).debug("configuration: %s", cfg)
    if cfg.bundle:  # a damaged bundle refuses to start before anything listens
        load_bundle(cfg.bundle, verify=cfg.verify_manifest)
    # Paddle's C++ core installs glog's failure signal handlers, SIGTERM's included, when it is first
    # imported: import it before ours (below), or a model loaded later would make SIGTERM kill, not drain
    framework_pb2()
    repo = ModelRepository(cfg, open_model, log=_log)
    sources = repo.sources()  # a repository's problems (two models of one name, a bad config.pbtxt) too
    repo.check_default(sources)
    if not is_loopback(cfg.host):
        _log(
            f"warning: listening on {cfg.host}, reachable from other machines; "
            "keep it on 127.0.0.1 unless a firewall or TLS proxy is in front"
        )
    max_body = cfg.max_body_mb << 20
    token = load_token(cfg.auth_token_file) if cfg.auth_token_file else None
    protocols = frontends()
    tls = _tls_context(cfg)
    listener = listener_for(cfg, tls)  # one shared port, or --grpc-port's split layout (listeners.py)
    grpc_server, health = make_grpc_server(
        repo, protocols, max_body + (1 << 20), token, outer_interceptors=(GrpcAccessLog(),) if cfg.access_log else ()
    )
    listener.bind_grpc(grpc_server)
    # uvicorn's own log (stderr) only says more with --log-level debug; its access log is ours (logs.py)
    http_server = _QuietUvicorn(
        uvicorn.Config(
            make_http_app(repo, protocols, token, access_log=cfg.access_log),
            log_level={"debug": "debug", "error": "error"}.get(cfg.log_level, "warning"),
            lifespan="off",
            access_log=False,
            timeout_graceful_shutdown=None,
            h11_max_incomplete_event_size=max_body,
            **listener.uvicorn_options(),
        )
    )
    stop_event = asyncio.Event()
    loop = asyncio.get_running_loop()
    if install_signals:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop_event.set)
    http_task = poller = None
    try:
        await grpc_server.start()
        await health.set(False)
        http_task = asyncio.create_task(http_server.serve(**listener.serve_args()))
        port, grpc_port = await listener.start(http_task, http_server)
        security = (
            ", ".join(x for x in ("TLS" if tls else "", "bearer token" if token else "") if x) or "no TLS, no auth"
        )
        what = (
            Path(cfg.bundle).name
            if cfg.bundle
            else f"{len(sources)} model(s) of {cfg.model_repository} ({cfg.model_control_mode} model control)"
        )
        _log(f"listening on {listener.describe(security)}; loading {what}")
        t0 = time.perf_counter()
        await _start_models(repo, cfg)
        await health.set(True)
        services = repo.services()
        if cfg.bundle:
            _log(f"ready in {time.perf_counter() - t0:.1f}s: {_describe(services[0])}")
        else:
            _log(
                f"ready in {time.perf_counter() - t0:.1f}s: {len(services)} model version(s), version policy "
                f"{repo.policy}" + (f", Paddle Serving's protocol reaches {repo.default}" if repo.default else "")
            )
        for service in services:
            _log(
                f"models: {service.name}: " + "; ".join(d for f in protocols if (d := f.describe(service.name)))
                if cfg.bundle
                else f"model {service.name} version {service.version}: {_describe(service)}"
            )
        if cfg.model_control_mode == "poll":
            poller = asyncio.create_task(poll_forever(repo, cfg.repository_poll_secs))
        if on_ready:
            on_ready(
                RunningServer(
                    port,
                    services[0] if services else None,
                    lambda: loop.call_soon_threadsafe(stop_event.set),
                    repo,
                    grpc_port,
                )
            )
        await stop_event.wait()
        _log("draining: finishing in-flight requests")
        if poller:
            poller.cancel()
        await _drain(cfg, repo, health, listener, grpc_server, http_server, http_task)
        _log("stopped")
        return 0
    finally:
        if poller:
            poller.cancel()
        if not stop_event.is_set():
            with contextlib.suppress(Exception):
                await listener.stop_accepting()
                await grpc_server.stop(0)
                http_server.should_exit = True
                if http_task:
                    await asyncio.wait_for(http_task, 5)
        try:
            for service in repo.services():
                if service.engine is not None:
                    await asyncio.to_thread(service.engine.close, cfg.grace_seconds)
        finally:
            listener.cleanup()  # the private sockets' folder, even when an engine failed to close
        if install_signals:  # only now: a second SIGTERM during clean-up must not kill us half-way
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)


async def _start_models(repo: ModelRepository, cfg: ServerConfig) -> None:
    await repo.start(list(cfg.load_model))


async def _drain(cfg, repo, health, listener, grpc_server, http_server, http_task) -> None:
    """Refuse new requests, answer every admitted one, then stop the transports.

    The wait for admitted requests is ours (``ModelRepository.close``, up to the grace period), not gRPC's
    grace: grpc.aio can take a call from its core just as shutdown begins and drop it before any handler
    runs (the task that would run it is cancelled), and such a call holds its client until the grace
    period ends -- 30 s by default, the same as a client's usual deadline. Once every admitted request is
    answered, gRPC gets ``GRPC_FINAL_GRACE`` to finish writing answers and cancels what is left, so the
    client of a dropped call hears CANCELLED within seconds instead of timing out.
    """
    deadline = time.monotonic() + cfg.grace_seconds
    repo.draining = True
    for service in repo.services():
        service.draining = True
    await health.set(False)
    await listener.stop_accepting()
    http_server.should_exit = True
    await repo.close()
    # uvicorn has been draining meanwhile; whatever it still holds (a slow upload) gets what is left of the grace
    left = max(GRPC_FINAL_GRACE, deadline - time.monotonic())
    await asyncio.gather(
        grpc_server.stop(GRPC_FINAL_GRACE),
        asyncio.wait_for(asyncio.shield(http_task), left + 5),
        return_exceptions=True,
    )
    await listener.close_connections(5.0)


def serve(cfg: ServerConfig) -> int:
    """Run the server in this thread until SIGTERM/SIGINT; the exit code."""
    return asyncio.run(run_server(cfg))
