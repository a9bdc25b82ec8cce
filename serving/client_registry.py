"""The registry of client protocols: one row per protocol, read by everything that names one.

The CLI's ``--protocol`` choices, the benchmarks' ``--protocols``, the reports' descriptions, the demo and
:func:`serving.client.make_client` all read these rows, so a new client protocol is one module (a
:class:`~serving.client_base.Client` subclass in its protocol's package) and one :func:`register` call. Rows
name their class as ``"module:Class"``: reading the registry imports no client (nor grpc, nor requests).
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

from vslim.registry import Registry, load_attribute

from .errors import ServingError


@dataclass(frozen=True)
class ClientProtocol:
    """One client protocol: ``factory(address, config, timeout, token=, tls_ca=, **options)`` builds its client.

    ``transport``: ``grpc`` or ``http`` (where a deployment puts them on separate ports, as Ray does, the
    client goes to that transport's). ``tensors``: it sends the bundle's tensors (``predict(feed, fetch)``), so load benchmarks and soak tests can
    drive it; the video endpoints send a video instead and are the CLI's only. ``metrics_label``: the
    ``protocol`` label the server's Prometheus series give its requests. ``same_host``: the client must run on
    the server's host and the server allow client shared memory, so sweeps include it only when named.
    """

    name: str
    factory: str | type
    description: str
    metrics_label: str
    transport: str
    options: Mapping[str, Any] = field(default_factory=dict)
    tensors: bool = True
    aliases: tuple[str, ...] = ()
    same_host: bool = False  # hands tensors over in the server's shared memory (--allow-client-shm): never a default

    def load(self) -> Any:
        return load_attribute(self.factory)


_PROTOCOLS: Registry[ClientProtocol] = Registry()


def register(row: ClientProtocol) -> ClientProtocol:
    _PROTOCOLS.register(row.name, row)
    return row


def unregister(name: str) -> None:
    _PROTOCOLS.unregister(name)


def registered(row: ClientProtocol) -> AbstractContextManager[ClientProtocol]:
    """A client protocol registered for the duration of a ``with`` block (tests, experiments)."""
    return _PROTOCOLS.registered(row.name, row)


def protocol_names(tensors_only: bool = False, same_host: bool = True) -> list[str]:
    """Every registered client protocol (those that send tensors, with ``tensors_only``; without the same-host
    ones, shared memory's, with ``same_host=False``: the default sweeps), in registry order."""
    return [r.name for r in _PROTOCOLS.rows() if (r.tensors or not tensors_only) and (same_host or not r.same_host)]


def needs_shared_memory(names) -> bool:
    """Whether any of these protocols needs the server's ``--allow-client-shm``."""
    return any(protocol(n).same_host for n in names)


def rows() -> list[ClientProtocol]:
    return _PROTOCOLS.rows()


def protocol(name: str) -> ClientProtocol:
    """The row of ``name`` (or of an alias), or a ServingError listing the choices."""
    for row in _PROTOCOLS.rows():
        if name == row.name or name in row.aliases:
            return row
    raise ServingError(f"unknown protocol {name!r}; use one of {', '.join(protocol_names())}")


def describe(name: str) -> str:
    """``name (what it sends)`` for reports: "http" alone is ambiguous next to http-proto and v2-http."""
    try:
        return f"{name} ({protocol(name).description})"
    except ServingError:
        return name


_PADDLE = "vslim.serving.protocols.paddle_serving.client"
_V2 = "vslim.serving.protocols.v2.client"
for _row in (
    ClientProtocol("grpc", f"{_PADDLE}:GrpcClient", "Paddle Serving gRPC (protobuf)", "grpc", "grpc"),
    ClientProtocol(
        "http",
        f"{_PADDLE}:HttpClient",
        "Paddle Serving HTTP, JSON body",
        "http",
        "http",
        {"mode": "json"},
        aliases=("http-json",),
    ),
    ClientProtocol(
        "http-proto", f"{_PADDLE}:HttpClient", "Paddle Serving HTTP, protobuf body", "http", "http", {"mode": "proto"}
    ),
    ClientProtocol("v2-grpc", f"{_V2}:V2GrpcClient", "KServe v2 gRPC (binary tensors)", "v2-grpc", "grpc"),
    ClientProtocol("v2-http", f"{_V2}:V2HttpClient", "KServe v2 HTTP (binary tensors)", "v2-http", "http"),
    ClientProtocol(
        "v2-grpc-shm",
        "vslim.serving.protocols.v2.shm_client:V2GrpcShmClient",
        "KServe v2 gRPC, inputs in system shared memory (same host; server --allow-client-shm)",
        "v2-grpc",
        "grpc",
        same_host=True,
    ),
    ClientProtocol(
        "video",
        f"{_PADDLE}:VideoEndpointClient",
        "PaddleVideo's pipeline endpoint: the video's frames posted to /video/prediction",
        "http",
        "http",
        tensors=False,
    ),
    ClientProtocol(
        "video-file",
        f"{_PADDLE}:VideoEndpointClient",
        "the video file posted to /video/classify; the server decodes it",
        "http",
        "http",
        tensors=False,
    ),
):
    register(_row)
