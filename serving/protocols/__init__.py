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

A new protocol is a package with its ``frontend`` module and one :func:`register` call (a row of ``_FRONTENDS``
for the built-in ones); the server, its gRPC interceptors, the metrics labels and Ray's ingress all iterate
:func:`frontends` and name no protocol. CONTRIBUTING.md has the checklist.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from vslim.registry import Registry

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


# name -> the Frontend, or where to find it (``.package.module:ATTRIBUTE``, relative to this package: the front
# ends import this module for ``Frontend``, so they are loaded when first asked for)
_FRONTENDS: Registry[Frontend] = Registry(package=__name__)
_FRONTENDS.register("paddle_serving", ".paddle_serving.frontend:FRONTEND")
_FRONTENDS.register("v2", ".v2.frontend:FRONTEND")


def register(frontend: Frontend) -> Frontend:
    """Serve one more protocol (or replace the front end of the same name) on every server started after."""
    _FRONTENDS.register(frontend.name, frontend)
    return frontend


def unregister(name: str) -> None:
    _FRONTENDS.unregister(name)


def registered(frontend: Frontend) -> AbstractContextManager[Frontend]:
    """A front end registered for the duration of a ``with`` block (tests, experiments)."""
    return _FRONTENDS.registered(frontend.name, frontend)


def frontends() -> list[Frontend]:
    """The protocols every server speaks, on the same port, in registration order."""
    return _FRONTENDS.rows()
