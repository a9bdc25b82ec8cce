"""The gRPC side of the server: every protocol's services on one ``grpc.aio`` server, plus health checking.

Standard gRPC health reports NOT_SERVING until the start-up models are loaded and while
draining, for the whole server ("") and for each protocol's service name.
"""

from __future__ import annotations

from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from .auth import GrpcAuth
from .protocols import Frontend
from .repository import ModelRepository


@dataclass
class Health:
    """Standard gRPC health of the server and of each protocol's services."""

    servicer: health.aio.HealthServicer
    names: list[str]

    async def set(self, serving: bool) -> None:
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        for name in self.names:
            await self.servicer.set(name, status)


def make_grpc_server(
    repo: ModelRepository,
    frontends: list[Frontend],
    max_message_bytes: int,
    token: str | None = None,
    outer_interceptors: tuple = (),
) -> tuple[grpc.aio.Server, Health]:
    """The server, and its health (NOT_SERVING until :meth:`Health.set` says otherwise).

    ``outer_interceptors`` run before authentication (the access log sees refused calls too).
    """
    interceptors = list(outer_interceptors)
    if token:

        def denied(method: str) -> None:
            label = next((f.grpc_label for f in frontends if method.startswith(f.grpc_prefix)), "grpc")
            repo.metrics.for_model("").errors.labels(label, "unauthenticated").inc()

        open_methods = tuple(m for f in frontends for m in f.open_grpc)
        interceptors.append(GrpcAuth(token, open_methods, denied))
    server = grpc.aio.server(
        interceptors=interceptors,
        options=[
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
            ("grpc.so_reuseport", 0),
        ],
    )
    names = [""]
    for frontend in frontends:
        names += frontend.add_grpc(server, repo)
    servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    return server, Health(servicer, names)
