"""Where the server listens: one shared port (vslim's default), or Triton's layout of one port per transport.

``SharedPort``: the public port is the port sharer's (``portshare.py``): it tells gRPC (HTTP/2) from HTTP/1
by the first bytes, terminates TLS, and relays each connection to the gRPC server's and the HTTP app's
private Unix sockets (without TLS, HTTP connections are handed to the HTTP server itself, unrelayed), so
every client needs one address. ``SplitPorts`` (``--grpc-port``, as Triton's
``--http-port`` / ``--grpc-port``): the HTTP app listens on ``--port`` and the gRPC server on ``--grpc-port``
themselves, each with its own TLS, and no byte is relayed: for users who do not need one port and would
rather not pay the relay's copy on every request. Both give the server the same four steps: bind gRPC,
configure and start HTTP, stop accepting, close.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import ssl
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from .config import ServerConfig
from .errors import ServingError
from .logs import relayed_http_protocol
from .portshare import LINGER_MAX, LINGER_QUIET, PortSharer


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host else host


class _Linger(asyncio.Protocol):
    """A closed HTTP connection's last moments: drop what the client still sends until it pauses or ends, then
    close, and tell uvicorn's protocol (``inner``) the connection is gone.

    uvicorn answers a malformed request at once and closes while the client may still be uploading; closing a
    socket with unread bytes resets it, and the client loses the answer (the relay lingers the same way:
    ``portshare._linger``)."""

    def __init__(self, inner: asyncio.BaseProtocol, close: Callable[[], None]):
        self.inner, self.close = inner, close
        self.loop = asyncio.get_running_loop()
        self.end = self.loop.time() + LINGER_MAX
        self.timer = self.loop.call_later(LINGER_QUIET, self.done)

    def data_received(self, data: bytes) -> None:
        self.timer.cancel()
        self.timer = self.loop.call_later(max(0.0, min(LINGER_QUIET, self.end - self.loop.time())), self.done)

    def eof_received(self) -> bool:
        self.done()
        return True  # closed here, not by the transport

    def done(self) -> None:
        self.timer.cancel()
        self.close()  # asyncio's own close: the answer's last bytes flush first

    def connection_lost(self, exc: Exception | None) -> None:
        self.timer.cancel()
        self.inner.connection_lost(exc)


def _close_lingering(transport: asyncio.Transport) -> None:
    """Make ``transport.close()`` half-close after the pending answer and linger (``_Linger``) before closing."""
    close = transport.close
    closing = False

    def linger() -> None:
        nonlocal closing
        if closing:
            return
        closing = True
        transport.set_protocol(_Linger(transport.get_protocol(), close))
        if transport.can_write_eof():
            transport.write_eof()
        transport.resume_reading()

    transport.close = linger  # type: ignore[method-assign]


def _adopting(server) -> Callable[[socket.socket], Awaitable[None]]:
    """How the running uvicorn ``server`` takes a connection accepted elsewhere: its own protocol factory
    (``uvicorn.Server.startup``'s), on the connected socket. It then counts, serves and drains that
    connection like one it accepted; closing it lingers as the relay did."""

    def protocol() -> asyncio.Protocol:
        config = server.config
        http = config.http_protocol_class(
            config=config, server_state=server.server_state, app_state=server.lifespan.state
        )
        made = http.connection_made

        def connection_made(transport) -> None:  # before uvicorn reads a byte: it may close on the first
            _close_lingering(transport)
            made(transport)

        http.connection_made = connection_made
        return http

    async def adopt(sock: socket.socket) -> None:
        await asyncio.get_running_loop().connect_accepted_socket(protocol, sock)

    return adopt


class SharedPort:
    """gRPC and HTTP on one public port: gRPC relayed to a private Unix socket, HTTP handed to the HTTP server
    itself (relayed too with TLS, which the port terminates)."""

    def __init__(self, cfg: ServerConfig, tls: ssl.SSLContext | None):
        self.cfg, self.tls = cfg, tls
        self.folder = Path(tempfile.mkdtemp(prefix="vslim-serve-"))
        os.chmod(self.folder, 0o700)  # the private backends are reachable through the public port only
        self.grpc_sock, self.http_sock = self.folder / "grpc.sock", self.folder / "http.sock"
        self.sharer = PortSharer(cfg.host, cfg.port, str(self.grpc_sock), str(self.http_sock), tls)
        self.ports: tuple[int, int] = (cfg.port, cfg.port)

    def bind_grpc(self, grpc_server) -> None:
        grpc_server.add_insecure_port(f"unix:{self.grpc_sock}")

    def uvicorn_options(self) -> dict[str, Any]:
        return {"uds": str(self.http_sock), "http": relayed_http_protocol()}

    def serve_args(self) -> dict[str, Any]:
        return {}

    async def start(self, http_task: asyncio.Task, http_server) -> tuple[int, int]:
        """Once the HTTP app listens on its socket, open the public port; (HTTP port, gRPC port)."""
        while not self.http_sock.exists():
            if http_task.done():
                http_task.result()
            await asyncio.sleep(0.01)
        if self.sharer.kernel_relay:
            self.sharer.http_handoff = _adopting(http_server)
        try:
            port = await self.sharer.start()
        except OSError as exc:
            raise ServingError(
                f"cannot listen on {self.cfg.host}:{self.cfg.port}: {exc.strerror or exc}; "
                "choose another --port or stop what holds it"
            ) from exc
        self.ports = (port, port)
        return self.ports

    def describe(self, security: str) -> str:
        return f"{self.cfg.host}:{self.ports[0]} (gRPC + HTTP: Paddle Serving and KServe v2; {security})"

    async def stop_accepting(self) -> None:
        await self.sharer.stop_accepting()

    async def close_connections(self, timeout: float) -> None:
        await self.sharer.close_connections(timeout)

    def cleanup(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def _tcp_listener(host: str, port: int) -> socket.socket:
    """A listening TCP socket whose ``proto`` is IPPROTO_TCP, not 0.

    asyncio sets TCP_NODELAY on an accepted connection only when the socket says it is TCP by its ``proto``
    (``base_events._set_nodelay``); ``socket.create_server`` leaves it 0, and then Nagle's algorithm and the
    client's delayed ACK held every HTTP answer's second segment ~40 ms (R50 v2-http p50 144 ms vs 109 ms
    through the relay, measured).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(1024)
    except OSError:
        sock.close()
        raise
    return sock


class SplitPorts:
    """HTTP on ``--port`` and gRPC on ``--grpc-port``, each listening itself (Triton's layout; no relay)."""

    def __init__(self, cfg: ServerConfig, tls: ssl.SSLContext | None):
        self.cfg, self.tls = cfg, tls
        assert cfg.grpc_port is not None  # SplitPorts is chosen by --grpc-port
        self.grpc_port = cfg.grpc_port
        try:  # bound now, so port 0 is known and a taken port is refused before any model loads
            self.http_socket = _tcp_listener(cfg.host, cfg.port)
        except OSError as exc:
            raise ServingError(
                f"cannot listen on {cfg.host}:{cfg.port} (HTTP): {exc.strerror or exc}; "
                "choose another --port or stop what holds it"
            ) from exc
        self.ports = (self.http_socket.getsockname()[1], self.grpc_port)

    def bind_grpc(self, grpc_server) -> None:
        import grpc

        address = f"{_bracketed(self.cfg.host)}:{self.grpc_port}"
        try:
            if self.cfg.tls_cert and self.cfg.tls_key:
                credentials = grpc.ssl_server_credentials(
                    [(Path(self.cfg.tls_key).read_bytes(), Path(self.cfg.tls_cert).read_bytes())]
                )
                bound = grpc_server.add_secure_port(address, credentials)
            else:
                bound = grpc_server.add_insecure_port(address)
        except RuntimeError as exc:  # grpc raises RuntimeError("Failed to bind ...")
            bound, reason = 0, str(exc)
        else:
            reason = "the address is taken or not available"
        if not bound:
            self.http_socket.close()
            raise ServingError(
                f"cannot listen on {address} (gRPC): {reason}; choose another --grpc-port or stop what holds it"
            )
        self.ports = (self.ports[0], bound)

    def uvicorn_options(self) -> dict[str, Any]:
        if not self.cfg.tls_cert:
            return {}
        return {"ssl_certfile": self.cfg.tls_cert, "ssl_keyfile": self.cfg.tls_key}

    def serve_args(self) -> dict[str, Any]:
        return {"sockets": [self.http_socket]}

    async def start(self, http_task: asyncio.Task, http_server) -> tuple[int, int]:
        return self.ports

    def describe(self, security: str) -> str:
        host = _bracketed(self.cfg.host)
        return (
            f"{host}:{self.ports[0]} (HTTP: Paddle Serving and KServe v2) and {host}:{self.ports[1]} "
            f"(gRPC: Paddle Serving and KServe v2); {security}"
        )

    async def stop_accepting(self) -> None:
        """The gRPC server stops accepting in its own ``stop``; the HTTP socket closes here."""
        self.http_socket.close()

    async def close_connections(self, timeout: float) -> None:
        """Each server closes its own connections when it stops: nothing relayed to end."""

    def cleanup(self) -> None:
        self.http_socket.close()


def listener_for(cfg: ServerConfig, tls: ssl.SSLContext | None) -> SharedPort | SplitPorts:
    return SharedPort(cfg, tls) if cfg.grpc_port is None else SplitPorts(cfg, tls)
