"""gRPC through Ray's proxy: what the proxy registers, and how a replica answers with vslim's own handlers.

Ray's gRPC proxy registers each service with a servicer function (named in
``gRPCOptions.grpc_servicer_functions``), deserializes requests with the
registered deserializer, and calls the replica method named like the RPC; the
replica's return value must offer ``SerializeToString()``. The functions here
register every protocol's RPCs *without* a deserializer, so the raw request
bytes travel to the replica, where the protocol's own gRPC handler (the very
one vslim-serve runs) parses, checks and answers them: one code path for
validation, batching and errors, and no protobuf class has to be pickled (v2's
messages live in a private descriptor pool, see docs/architecture.md).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc

from ..auth import DENIED, authorized
from ..protocols import Frontend, frontends


def _servicer_function(frontend: Frontend):
    """Ray's servicer function for one protocol: registers its RPCs on Ray's gRPC proxy, which replaces the
    behaviours and keeps the (absent) parsing. One function per protocol: the proxy takes one per service
    family (one function registering two protocols' services answered the second with its mock servicer)."""

    def add_to_server(servicer: Any, server: grpc.aio.Server) -> None:
        by_service: dict[str, dict[str, grpc.RpcMethodHandler]] = {}
        for full in frontend.grpc_methods:
            service, method = full.strip("/").split("/")
            by_service.setdefault(service, {})[method] = grpc.unary_unary_rpc_method_handler(
                getattr(servicer, method), request_deserializer=None, response_serializer=None
            )
        server.add_generic_rpc_handlers(
            tuple(grpc.method_handlers_generic_handler(s, h) for s, h in by_service.items())
        )

    add_to_server.__name__ = add_to_server.__qualname__ = f"add_{frontend.name}_to_server"
    return add_to_server


# Module attributes, so that a Serve config can name them by import path (one per protocol plug-in).
for _frontend in frontends():
    globals()[f"add_{_frontend.name}_to_server"] = _servicer_function(_frontend)
SERVICER_FUNCTIONS = tuple(f"{__name__}.add_{f.name}_to_server" for f in frontends())


def grpc_method_names() -> list[str]:
    """The short RPC names every replica answers (the proxy calls the replica method of that name)."""
    return [full.rsplit("/", 1)[1] for f in frontends() for full in f.grpc_methods]


class Aborted(Exception):
    """A handler called ``context.abort``; the status is already on Ray's context."""


class _Context:
    """The part of ``grpc.aio.ServicerContext`` vslim's handlers use, over Ray's serializable context.

    ``abort`` records code, details and trailing metadata on Ray's context and the
    replica then *returns*: Ray's proxy copies a returned context onto the call
    (trailing metadata included, which it drops for a raised error, and Paddle
    Serving clients read ``err_no`` from it) and keeps a code already set.
    """

    def __init__(self, ray_context):
        self._ray = ray_context

    def invocation_metadata(self):
        return self._ray.invocation_metadata()

    async def abort(self, code: grpc.StatusCode, details: str = "", trailing_metadata=()) -> None:
        self._ray.set_code(code)
        self._ray.set_details(details)
        if trailing_metadata:
            self._ray.set_trailing_metadata(list(trailing_metadata))
        raise Aborted(details)


class _Serialized:
    """A reply already serialized by the protocol's own serializer (Ray calls ``SerializeToString``)."""

    __slots__ = ("data",)

    def __init__(self, data: bytes):
        self.data = data

    def SerializeToString(self) -> bytes:  # noqa: N802 (protobuf's name)
        return self.data


class _Collector:
    """Takes the generic handlers a protocol's ``add_grpc`` registers, instead of a grpc server."""

    def __init__(self):
        self.handlers: dict[str, grpc.RpcMethodHandler] = {}

    def add_generic_rpc_handlers(self, generic_handlers) -> None:
        for generic in generic_handlers:
            self.handlers.update(generic._method_handlers)


class GrpcMethods:
    """A replica's gRPC side: every protocol's handlers, reached by short RPC name, behind the token check."""

    def __init__(self, repo, protocols: list[Frontend], token: str | None = None):
        collector = _Collector()
        for frontend in protocols:
            frontend.add_grpc(collector, repo)
        self._handlers = {full.rsplit("/", 1)[1]: (full, handler) for full, handler in collector.handlers.items()}
        self._token = token
        self._open = frozenset(m for f in protocols for m in f.open_grpc)
        self._label: Callable[[str], str] = lambda full: next(
            (f.grpc_label for f in protocols if full.startswith(f.grpc_prefix)), "grpc"
        )
        self._metrics = repo.metrics.for_model("")

    async def call(self, method: str, request: bytes, ray_context) -> _Serialized:
        full, handler = self._handlers[method]
        context = _Context(ray_context)
        try:
            if (
                self._token
                and full not in self._open
                and not authorized(dict(context.invocation_metadata()).get("authorization"), self._token)
            ):
                self._metrics.errors.labels(self._label(full), "unauthenticated").inc()
                await context.abort(
                    grpc.StatusCode.UNAUTHENTICATED, f"{DENIED}: send metadata 'authorization: Bearer <token>'"
                )
            reply = await handler.unary_unary(request, context)
        except Aborted:
            return _Serialized(b"")  # the status is on the context; gRPC sends no message with it
        return _Serialized(handler.response_serializer(reply))
