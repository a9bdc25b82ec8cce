"""Python clients for vslim (and Paddle Serving, and any v2) servers: the façade.

:func:`make_client` builds the client of any protocol in the registry (``client_registry.py``: the CLI's
``--protocol`` choices, the benchmarks' ``--protocols``, the reports and the demo read the same rows); the
classes are importable from here too.

The layers (Triton's client library is the model): ``client_base.py`` holds what every protocol shares and
imports none; ``protocols/paddle_serving/client.py`` and ``protocols/v2/client.py`` hold one protocol each;
this module sits on top.
"""

from __future__ import annotations

from typing import Any

from .client_base import (
    DEFAULT_PORT,
    DEFAULT_TIMEOUT,
    Client,
    ClientConfig,
    classify_video,
    client_folder,
    normalize_address,
    split_address,
)
from .client_registry import ClientProtocol, protocol, protocol_names
from .errors import ClientError, ServerUnreachableError
from .protocols.paddle_serving.client import GrpcClient, HttpClient, VideoEndpointClient
from .protocols.v2.client import V2GrpcClient, V2HttpClient

__all__ = [
    "DEFAULT_PORT",
    "DEFAULT_TIMEOUT",
    "Client",
    "ClientConfig",
    "ClientError",
    "ClientProtocol",
    "GrpcClient",
    "HttpClient",
    "ServerUnreachableError",
    "V2GrpcClient",
    "V2HttpClient",
    "VideoEndpointClient",
    "classify_video",
    "client_folder",
    "make_client",
    "normalize_address",
    "protocol_names",
    "split_address",
]


def make_client(
    protocol_name: str,
    address: str,
    config=None,
    timeout: float = DEFAULT_TIMEOUT,
    token: str | None = None,
    tls_ca: str | None = None,
    **options,
) -> Any:
    """A client of ``protocol_name`` (see :func:`protocol_names`); ``options`` go to its class (v2's ``model``,
    ``version``, ``binary``)."""
    row = protocol(protocol_name)
    return row.load()(address, config, timeout, token=token, tls_ca=tls_ca, **{**row.options, **options})
