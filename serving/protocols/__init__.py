"""Protocol front ends over one engine, the way Triton separates its HTTP/gRPC frontends from its backends.

Each protocol is a package with a ``frontend`` module exposing ``FRONTEND``: the
HTTP routes and gRPC services it adds to the shared server, and which of them
stay open without a token (health checks). The core (``service.py``,
``engine.py``, ``auth.py``, ``prometheus.py``, ``repository.py``) knows no protocol; a protocol's
codec, error mapping and routes live in its own package:

* ``paddle_serving``: Paddle Serving's ``GeneralModelService`` (gRPC and HTTP
  JSON/proto) and PaddleVideo's video endpoints;
* ``v2``: the Open Inference Protocol (KServe v2) with Triton's binary tensor,
  model configuration and statistics extensions, over HTTP and gRPC.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import grpc
    from fastapi import APIRouter

    from ..repository import ModelRepository


@dataclass(frozen=True)
class Frontend:
    """What one protocol adds to the server."""

    name: str
    http_router: Callable[[ModelRepository], APIRouter]
    # registers its gRPC services; returns the service names health checking reports
    add_grpc: Callable[[grpc.aio.Server, ModelRepository], list[str]]
    http_label: str  # the ``protocol`` label of its HTTP requests in metrics
    grpc_label: str
    owns_path: Callable[[str], bool]  # is this HTTP path one of its routes
    grpc_prefix: str  # its gRPC method names start with this
    grpc_methods: tuple[str, ...]  # full names of its unary RPCs (``/package.Service/Method``)
    open_http: Callable[[str], bool] = lambda path: False  # paths served without a token
    open_grpc: tuple[str, ...] = ()  # full gRPC method names served without a token
    describe: Callable[[str], str] = lambda model: ""  # how model ``model`` is reached, for the start-up log


def frontends() -> list[Frontend]:
    """The protocols every server speaks, on the same port."""
    from .paddle_serving.frontend import FRONTEND as paddle_serving
    from .v2.frontend import FRONTEND as v2

    return [paddle_serving, v2]
