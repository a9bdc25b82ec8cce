"""One Ray Serve replica: the same models, engines and protocol handlers as one vslim-serve.

A repository (``--model-repository DIR --ray``) is one application whose replicas each serve every
model of ``DIR``: v2 puts the model name in the middle of its paths (``/v2/models/NAME/...``) and in
gRPC messages, and Paddle Serving's protocol names no model, so Ray's proxy, which routes by path
prefix, cannot pick an application per model; Ray Serve's model multiplexing routes on a header
(``serve_multiplexed_model_id``) that tritonclient, KServe's SDK and Paddle Serving's clients do not send.
Load and unload are refused there (``--model-control-mode none``): a change is a redeploy, which
Ray rolls out replica by replica.

Batching: each replica runs vslim's own engine (dynamic batching across all
protocols, shape-keyed, with the server's limits and metrics), not Ray's
``@serve.batch``. ``@serve.batch`` batches the calls of one method only, so a
replica would batch v2 and Paddle Serving requests apart and need a second
copy of the checks the engine already makes; Ray's part is to route requests
to replicas (``max_ongoing_requests`` per replica is set high enough for the
engine to fill its batches) and to scale them.

HTTP: the replica's ASGI app is the one vslim-serve runs (``make_http_app``),
built at replica start (``__serve_build_asgi_app__``), so every route, error and
OpenAPI document is the same behind Ray's HTTP proxy. gRPC: see ``ingress``.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

import numpy as np
from ray import serve

from vslim.serving.config import ServerConfig

from ..auth import load_token
from ..http_app import make_http_app
from ..protocols import frontends
from ..repository import ModelRepository
from ..server import open_model
from .config import DEPLOYMENT, HEALTH_CHECK_PERIOD_S
from .ingress import GrpcMethods, grpc_method_names
from .ray_metrics import replica_metrics


def _log(message: str) -> None:
    print(f"vslim replica {os.getpid()}: {message}", file=sys.stderr, flush=True)


class VslimReplica:
    """Loads the bundle (or every model of the repository) on its node (the path must be there: shared storage
    or the image) and serves it."""

    def __init__(self, settings: dict[str, Any]):
        server = dict(settings["server"])
        server["load_model"] = tuple(server.get("load_model", ()))
        cfg = ServerConfig(**server).validate()
        self.cfg = cfg
        self.repo = ModelRepository(
            cfg, lambda c, source, metrics: open_model(c, source, metrics, _log), replica_metrics(), _log
        )
        self.token = load_token(cfg.auth_token_file) if cfg.auth_token_file else None
        self.protocols = frontends()
        t0 = time.perf_counter()
        self.repo.start_blocking()
        self.grpc = GrpcMethods(self.repo, self.protocols, self.token)
        for service in self.repo.services():
            _log(
                f"ready in {time.perf_counter() - t0:.1f}s: {service.name} version {service.version} "
                f"({service.check_ready().predictor.precision}, {cfg.threads} thread(s), {service.batching.workers} worker(s))"
            )

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        """``user_config`` only stamps who deployed (``vslim-serve --ray`` watches it to see a takeover)."""
        self.deployed_by = user_config.get("deployed_by")

    def __serve_build_asgi_app__(self):
        return make_http_app(self.repo, self.protocols, self.token)

    async def check_health(self) -> None:
        """Raise (Ray then replaces this replica) when an engine cannot answer.

        Loads nothing: reads each engine's state, and when no request has succeeded
        lately, runs one zero clip through that engine like any request.
        """
        for service in self.repo.services():
            engine = service.engine
            if engine is None:  # never for a listed service (open_model starts its engine before it is served)
                raise RuntimeError(f"unhealthy: {service.name} version {service.version} has no engine")
            problem = engine.problem()
            if problem:
                raise RuntimeError(f"unhealthy: {service.name} version {service.version}: {problem}")
            idle = time.monotonic() - engine.last_success > 2 * HEALTH_CHECK_PERIOD_S
            if idle and engine.queue_depth == 0:
                spec, fetch = service.signature.feeds[0], service.signature.fetches[0]
                shape = [d if d > 0 else 1 for d in spec.shape]
                try:
                    await service.run({spec.name: np.zeros([1, *shape], dtype=spec.dtype)}, [fetch.name], "health")
                except Exception as exc:
                    raise RuntimeError(f"unhealthy: a probe inference of {service.name} failed: {exc}") from exc

    def __del__(self):
        repo = getattr(self, "repo", None)
        for service in repo.services() if repo is not None else ():
            service.draining = True
            if service.engine is not None:
                service.engine.close(self.cfg.grace_seconds)


def _grpc_method(name: str):
    async def method(self, request: bytes, grpc_context):
        return await self.grpc.call(name, request, grpc_context)

    method.__name__ = method.__qualname__ = name
    method.__doc__ = f"The {name} RPC, as Ray's gRPC proxy calls it (the method is named after the RPC)."
    return method


for _name in grpc_method_names():
    setattr(VslimReplica, _name, _grpc_method(_name))

Deployment = serve.deployment(name=DEPLOYMENT)(serve.ingress()(VslimReplica))


def build_app(args: dict[str, Any]):
    """Serve config builder (``import_path: vslim.serving.rayserve.replica:build_app``, ``args``: the replica's)."""
    return Deployment.bind(args)
