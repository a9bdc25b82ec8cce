"""What every protocol's client shares, and nothing that belongs to one protocol.

Triton's client library is the model: this shared layer (addresses, connecting, TLS and tokens, "nothing
listens there", errors with a kind, the bundle's client config, preprocessing a video here), one package per
protocol above it (``protocols/paddle_serving/client.py``, ``protocols/v2/client.py``), and the façade with the
registry of client protocols on top (``serving/client.py``). This module imports no protocol package.

Every client takes ``HOST[:PORT]`` and fills in vslim-serve's port 9393 (gRPC on its own would take 443), and
turns "nothing listens there" into one :class:`ServerUnreachableError` whatever the protocol. A refusal is a
:class:`ClientError` whose ``kind`` is one of the server's error kinds (``serving/errors.py``), so a caller
can branch on ``exc.kind == UNAVAILABLE`` whatever the protocol; ``exc.status`` is the protocol's own code.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson

from vslim.data.pipeline import ClipPipeline, as_inputs
from vslim.errors import ConfigError
from vslim.model_meta import ModelMeta, load_meta
from vslim.topk import TopK

from .bundle import CLIENT_CONF, CLIENT_SUFFIX, SERVER_SUFFIX, read_signature
from .errors import KINDS, ServerUnreachableError, ServingError
from .signature import Signature

DEFAULT_TIMEOUT = 60.0
DEFAULT_PORT = 9393  # vslim-serve's (and Paddle Serving's examples') port
MAX_MESSAGE = 512 << 20


@dataclass
class ClientConfig:
    """What a client needs to know of a model: feed/fetch names, types, shapes; labels and preprocessing."""

    signature: Signature
    meta: ModelMeta | None = None
    name: str = ""  # the model's name on the server (the bundle's name)

    @classmethod
    def load(cls, path: Path | str) -> ClientConfig:
        """From a bundle folder (``vslim-package --out``), its ``NAME_serving_client`` folder or that folder's
        ``serving_client_conf.prototxt``; the ``NAME_serving_server`` folder leads to its client twin."""
        path = Path(path)
        folder, name = (path.parent, path.name) if path.is_file() else (client_folder(path), CLIENT_CONF)
        return cls(read_signature(folder, name), load_meta(folder), folder.name.removesuffix(CLIENT_SUFFIX))


def client_folder(path: Path) -> Path:
    """The ``*_serving_client`` folder that ``path`` (a bundle, client or server folder) stands for."""
    if not path.is_dir():
        raise ServingError(
            f"bundle {path} does not exist; give the bundle folder (vslim-package --target serving "
            f"--out), its *{CLIENT_SUFFIX} folder or that folder's {CLIENT_CONF}"
        )
    if any((path / n).is_file() for n in (CLIENT_CONF, CLIENT_CONF.replace(".prototxt", ".stream.prototxt"))):
        return path
    if path.name.endswith(SERVER_SUFFIX):
        twin = path.with_name(path.name.removesuffix(SERVER_SUFFIX) + CLIENT_SUFFIX)
        if twin.is_dir():
            return twin
        raise ServingError(
            f"{path} is a bundle's server folder and {twin.name} is not beside it; give the *{CLIENT_SUFFIX} folder"
        )
    inside = sorted(p for p in path.glob(f"*{CLIENT_SUFFIX}") if p.is_dir())
    if len(inside) > 1:
        raise ServingError(
            f"bundle folder {path} holds {len(inside)} client folders "
            f"({', '.join(p.name for p in inside)}); give one of them"
        )
    return inside[0] if inside else path  # read_config then names what is missing


def named_arrays(feed: dict[str, np.ndarray], config: ClientConfig | None) -> list[tuple[str, str, np.ndarray]]:
    """``(var name, alias, array)`` per feed (named by alias or var name), cast to the dtype the model declares."""
    out = []
    for key, value in feed.items():
        array = np.asarray(value)
        spec = config.signature.feed(key) if config else None
        if config and spec is None:
            raise ServingError(f"unknown feed {key!r}; the model takes {[s.alias for s in config.signature.feeds]}")
        if spec is not None and array.dtype != spec.dtype:
            array = array.astype(spec.dtype)
        out.append((spec.name if spec else key, spec.alias if spec else key, array))
    return out


def fetch_names(fetch: Sequence[str] | None, config: ClientConfig | None) -> list[str]:
    if fetch:
        return list(fetch)
    return [s.alias for s in config.signature.fetches] if config else []


def split_address(address: str) -> tuple[str, int]:
    """``HOST[:PORT]`` -> ``(host, port)``; no port means vslim-serve's 9393 in every protocol.

    Also taken: ``[v6]``, ``[v6]:PORT``, a bare IPv6 address, an ``http://`` / ``https://`` prefix and a trailing
    path (a URL copied from a browser); TLS is chosen by ``tls_ca``, not by the prefix.
    """
    text = address.strip()
    for scheme in ("http://", "https://"):
        text = text.removeprefix(scheme)
    text = text.split("/", 1)[0]
    usage = "give HOST[:PORT], e.g. 127.0.0.1:9393, localhost or [::1]:9393 (port 1-65535, default 9393)"
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise ConfigError(f"address {address!r} is not valid; {usage}")
        port_text = rest[1:] if rest else None
    elif text.count(":") > 1:  # a bare IPv6 address: nothing to tell its last group from a port
        host, port_text = text, None
    else:
        host, colon, port_text = text.partition(":")
        port_text = port_text if colon else None
    if not host:
        raise ConfigError(f"address {address!r} names no host; {usage}")
    if port_text is None:
        return host, DEFAULT_PORT
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ConfigError(f"address {address!r} has port {port_text!r}; {usage}")
    return host, int(port_text)


def normalize_address(address: str) -> str:
    """``host:port`` (``[v6]:port``) with the port filled in; gRPC's ``unix:`` targets pass as they are."""
    if address.startswith(("unix:", "unix-abstract:")):
        return address
    host, port = split_address(address)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def unreachable(address: str, cause: str) -> ServerUnreachableError:
    return ServerUnreachableError(f"no server at {address} — is vslim-serve running? ({cause})")


def _connect_cause(text: str) -> str | None:
    """A short reason when ``text`` (a gRPC status, a socket error) says the connection itself failed."""
    low = text.lower()
    for needle, cause in (
        ("connection refused", "connection refused"),
        ("errors resolving", "host name not found"),
        ("dns resolution failed", "host name not found"),
        ("name or service not known", "host name not found"),
        ("failed to resolve", "host name not found"),
        ("no route to host", "no route to host"),
        ("network is unreachable", "network unreachable"),
        ("connection timed out", "connection timed out"),
    ):
        if needle in low:
            return cause
    if "failed to connect to remote host" in low:
        return text.rsplit(": ", 1)[-1].strip().lower() or "connection failed"
    return None


def grpc_unreachable(exc, address: str) -> ServerUnreachableError | None:
    """The ServerUnreachableError of a gRPC failure that never reached a server, else None.

    A server's own UNAVAILABLE (loading, draining) or a TLS mismatch is not one: something did listen.
    """
    import grpc

    if exc.code() != grpc.StatusCode.UNAVAILABLE:
        return None
    cause = _connect_cause(exc.details() or "")
    return unreachable(address, cause) if cause else None


def http_unreachable(exc, address: str, timeout: float) -> ServerUnreachableError | None:
    """The ServerUnreachableError of a ``requests`` failure to connect at all (not one after connecting)."""
    import requests
    import urllib3

    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return unreachable(address, f"no connection within {timeout:g} s")
    if isinstance(exc, requests.exceptions.SSLError) or not isinstance(exc, requests.exceptions.ConnectionError):
        return None
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    if not isinstance(reason, urllib3.exceptions.NewConnectionError):
        return None
    if isinstance(reason, getattr(urllib3.exceptions, "NameResolutionError", ())):
        return unreachable(address, "host name not found")
    return unreachable(address, _connect_cause(str(reason)) or "connection failed")


def grpc_channel(address: str, token: str | None, tls_ca: str | None):
    """A channel (TLS when ``tls_ca`` is given) and the call metadata that carries the token."""
    import grpc

    options = [("grpc.max_receive_message_length", MAX_MESSAGE), ("grpc.max_send_message_length", MAX_MESSAGE)]
    if tls_ca:
        creds = grpc.ssl_channel_credentials(root_certificates=Path(tls_ca).read_bytes())
        channel = grpc.secure_channel(address, creds, options=options)
    else:
        channel = grpc.insecure_channel(address, options=options)
    return channel, ((("authorization", f"Bearer {token}"),) if token else None)


def http_session(requests, token: str | None, tls_ca: str | None):
    """A session whose trust is the ``tls_ca`` asked for.

    ``Session.verify`` alone loses to ``REQUESTS_CA_BUNDLE`` (requests merges the environment into every
    request), so a self-signed server certificate would be checked against the system store instead.
    """
    session = requests.Session()
    if token:
        session.headers["Authorization"] = f"Bearer {token}"
    if tls_ca:
        session.verify = tls_ca
        session.request = functools.partial(session.request, verify=tls_ca)
    return session


def kind_of(status, table: Mapping[str, object]) -> str | None:
    """The error kind whose status is ``status`` in a protocol's table (kind -> status), the first in
    ``KINDS`` order when several share one (INVALID before UNSUPPORTED for gRPC's INVALID_ARGUMENT)."""
    return next((kind for kind in KINDS if table.get(kind) == status), None)


class Client:
    """What every protocol's client offers: ``predict(feed, fetch) -> {name: ndarray}``, ``close()``, ``with``.

    ``protocol`` is the client registry's name for it (``serving/client_registry.py``). ``token``: the server's
    bearer token; ``tls_ca``: PEM certificate(s) to trust, which switches to TLS.
    """

    protocol = "?"

    def __init__(
        self,
        address: str,
        config: ClientConfig | str | Path | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        token: str | None = None,
        tls_ca: str | None = None,
    ):
        self.address = normalize_address(address)
        if isinstance(config, (str, Path)):
            config = ClientConfig.load(config)
        self.config = config
        self.timeout = timeout
        self.token = token
        self.tls_ca = tls_ca

    def predict(
        self, feed: dict[str, np.ndarray], fetch: Sequence[str] | None = None, log_id: int = 0
    ) -> dict[str, np.ndarray]:
        """Run one request; returns ``{fetch alias: array}``; raises ClientError (with the error kind) when the
        server refuses, ServerUnreachableError when nothing answers."""
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def sampling_record(value) -> dict | None:
    """A server's ``sampling`` record as a dict, whether sent as an object or as JSON text (pipeline values)."""
    if isinstance(value, (bytes, str)) and value:
        try:
            value = orjson.loads(value)
        except orjson.JSONDecodeError:
            return None
    return value if isinstance(value, dict) and value else None


def classify_video(client: Client, video: Path | str, top_k: int = 1) -> TopK:
    """Sample and preprocess ``video`` here, send the clip over ``client``'s protocol, return the top-k classes
    (with the sampling record of a video too short for the clip)."""
    if client.config is None or client.config.meta is None:
        raise ServingError("client-side preprocessing needs the bundle's client folder (it holds vslim.json)")
    meta = client.config.meta
    clip, sampling = ClipPipeline.for_model(meta).video_clip(video)
    feeds = {f.alias: x[None] for f, x in zip(client.config.signature.feeds, as_inputs(clip))}
    out = client.predict(feeds, [client.config.signature.fetches[0].alias])
    return TopK.of(next(iter(out.values()))[0], meta, top_k, sampling=sampling)
