"""One TCP port for gRPC and HTTP, as Paddle Serving's own server offers.

gRPC (grpcio) and HTTP (uvicorn) each listen on a private Unix socket. The public
port reads the first bytes of every connection: the HTTP/2 connection preface
(``PRI * HTTP/2.0``, which every gRPC client sends first) goes to gRPC, anything
else (``GET``, ``POST``, ...) to HTTP, and the connection is then relayed both ways
untouched. The decision is made once per connection, so keep-alive HTTP and
multiplexed gRPC streams pay it once; each message pays one local relay hop.

Without TLS (on Linux) the relay is the kernel's (``splice.py``): the first bytes are
peeked, not read, and both directions move socket -> pipe -> socket with ``splice(2)``,
never through Python. vslim-serve's HTTP server runs on the same event loop, so an HTTP
connection is not relayed at all: the accepted socket itself is handed to it
(``http_handoff``), the peeked bytes still unread. gRPC (grpcio's own C core) cannot
adopt a socket, so its connections are spliced. With TLS the public port terminates it (ALPN offers ``h2`` and
``http/1.1``): a connection that negotiated ``h2`` goes to gRPC, ``http/1.1`` to HTTP,
and one without ALPN is sniffed as above; its plaintext is relayed by asyncio streams.
The backends stay on private Unix sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import socket
import ssl
from collections.abc import Awaitable, Callable

from . import splice
from .peers import connect_backend, open_backend

H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
SNIFF_BYTES = 3
SNIFF_TIMEOUT = 30.0
RELAY_CHUNK = 1 << 18
CLOSE_FLUSH_TIMEOUT = 1.0
# After the backend closed, what the client still sends is read and dropped until it pauses this long (or this
# much time has passed): closing a socket with unread bytes resets it, and the client would lose the answer.
LINGER_QUIET = 0.5
LINGER_MAX = 5.0


async def _relay(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
    try:
        while True:
            data = await src.read(RELAY_CHUNK)
            if not data:
                break
            dst.write(data)
            if dst.transport.get_write_buffer_size() > RELAY_CHUNK:
                await dst.drain()
        if dst.can_write_eof():
            dst.write_eof()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            await dst.drain()


async def _linger(read: Callable[[], Awaitable[bytes]]) -> None:
    """Drop the client's remaining bytes (``read()``: its next chunk) until it pauses or ends, so the backend's
    last answer reaches it.

    A backend may answer before the request is in, then close: uvicorn answers a malformed
    request with 400 at once. Closing now, with the rest of the upload unread, makes the
    kernel reset the connection, and the client sees a broken pipe instead of the answer
    (HTTP servers' "lingering close"). An idle client costs ``LINGER_QUIET``, not a wait
    for its own timeout.
    """
    loop = asyncio.get_running_loop()
    end = loop.time() + LINGER_MAX
    with contextlib.suppress(asyncio.TimeoutError, ConnectionError, OSError):
        while (left := end - loop.time()) > 0:
            if not await asyncio.wait_for(read(), min(LINGER_QUIET, left)):
                return


class PortSharer:
    """Accepts on ``host:port`` and hands each connection to the gRPC or the HTTP backend."""

    def __init__(
        self, host: str, port: int, grpc_socket: str, http_socket: str, ssl_context: ssl.SSLContext | None = None
    ):
        self.host, self.port = host, port
        self.grpc_socket, self.http_socket = grpc_socket, http_socket
        self.ssl_context = ssl_context
        self._server: asyncio.base_events.Server | None = None
        self._connections: set[asyncio.Task] = set()
        # VSLIM_STREAM_RELAY=1: the stream relay without TLS too (to measure the kernel relay against it)
        self.kernel_relay = ssl_context is None and splice.available() and not os.environ.get("VSLIM_STREAM_RELAY")
        self._listener: socket.socket | None = None
        self._accepting: asyncio.Task | None = None
        # With the kernel relay, an HTTP server in this process may take HTTP connections itself (no relay at all):
        # set by the listener once that server runs (listeners.SharedPort.start); None relays them to http_socket.
        self.http_handoff: Callable[[socket.socket], Awaitable[None]] | None = None

    async def start(self) -> int:
        """Start listening; returns the bound port (useful with port 0)."""
        if self.kernel_relay:
            return self._start_kernel_relay()
        self._server = await asyncio.start_server(
            self._handle,
            self.host,
            self.port,
            backlog=1024,
            reuse_address=True,
            limit=RELAY_CHUNK,
            ssl=self.ssl_context,
            ssl_handshake_timeout=SNIFF_TIMEOUT if self.ssl_context else None,
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    def _start_kernel_relay(self) -> int:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        try:
            listener = socket.create_server((self.host, self.port), family=family, backlog=1024)
        except socket.gaierror as exc:
            raise OSError(exc.errno, f"cannot resolve {self.host}: {exc.strerror}") from exc
        listener.setblocking(False)
        self._listener = listener
        self.port = listener.getsockname()[1]
        self._accepting = asyncio.ensure_future(self._accept())
        return self.port

    async def _accept(self) -> None:
        loop = asyncio.get_running_loop()
        assert self._listener is not None  # set by _start_kernel_relay
        while True:
            try:
                conn, peer = await loop.sock_accept(self._listener)
            except (ConnectionError, BlockingIOError):
                continue
            except OSError as exc:  # out of file descriptors: let a connection end before trying again
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    await asyncio.sleep(0.1)
                    continue
                raise
            conn.setblocking(False)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            task = asyncio.ensure_future(self._splice_connection(conn, peer))
            self._connections.add(task)
            task.add_done_callback(self._connections.discard)

    async def _splice_connection(self, conn: socket.socket, peer) -> None:
        """One client connection through the kernel relay: peek, pick the backend, splice both ways."""
        backend = None
        handed = False
        try:
            head = await splice.peek(conn, SNIFF_BYTES, SNIFF_TIMEOUT)
            if not head:
                return
            grpc = head.startswith(H2_PREFACE[:SNIFF_BYTES])
            if not grpc and self.http_handoff is not None:
                await self.http_handoff(conn)  # the peeked bytes are still in the socket for it to read
                handed = True
                return
            path = self.grpc_socket if grpc else self.http_socket
            backend = await connect_backend(path, peer)
            upstream = asyncio.ensure_future(splice.pump(conn, backend))
            try:
                # the backend ending its side ends the connection, as in the stream relay (_handle)
                await splice.pump(backend, conn)
            finally:
                upstream.cancel()
                await asyncio.wait([upstream])
            await _linger(lambda: asyncio.get_running_loop().sock_recv(conn, RELAY_CHUNK))
        except (TimeoutError, ConnectionError, OSError, asyncio.CancelledError):
            pass
        finally:
            for sock in (backend, None if handed else conn):
                if sock is not None:
                    sock.close()

    async def stop_accepting(self) -> None:
        """Close the listening socket; open connections carry on (the drain ends them).

        Deliberately no ``Server.wait_closed()`` here: since Python 3.12.1 it waits for every
        accepted connection to drop, and an idle keep-alive one (HTTP/1.1, a gRPC channel) only
        drops once the backends shut down, which the drain does after this: it would hang.
        """
        if self._server is not None:
            self._server.close()
        if self._accepting is not None:
            self._accepting.cancel()
            await asyncio.wait([self._accepting])
        if self._listener is not None:
            self._listener.close()

    async def close_connections(self, timeout: float) -> None:
        """Wait for relayed connections to end (backends close them when drained), then cut the rest."""
        if self._connections:
            _, pending = await asyncio.wait(self._connections, timeout=timeout)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=1.0)
        if self._server is not None:
            # closed connections get a moment to flush their last bytes (and, with TLS, to trade close_notify;
            # an idle client never answers it). Python 3.11's wait_closed() returns at once.
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), CLOSE_FLUSH_TIMEOUT)
            abort_clients = getattr(self._server, "abort_clients", None)  # Python 3.13+
            if abort_clients is not None:
                abort_clients()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None  # a stream callback always runs in its own task
        self._connections.add(task)
        backend_writer = None
        try:
            sock = writer.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            tls = writer.get_extra_info("ssl_object")
            alpn = tls.selected_alpn_protocol() if tls is not None else None
            head = b""
            while len(head) < SNIFF_BYTES:
                chunk = await asyncio.wait_for(reader.read(RELAY_CHUNK), SNIFF_TIMEOUT)
                if not chunk:
                    return
                head += chunk
            if alpn is not None:
                path = self.grpc_socket if alpn == "h2" else self.http_socket
            else:
                path = self.grpc_socket if head.startswith(H2_PREFACE[:SNIFF_BYTES]) else self.http_socket
            # named after the client, so the backends' access log can say who it is (peers.py)
            backend_reader, backend_writer = await open_backend(path, writer.get_extra_info("peername"), RELAY_CHUNK)
            backend_writer.write(head)
            upstream = asyncio.ensure_future(_relay(reader, backend_writer))
            try:
                # The backend ending its side ends the connection: it has sent all it will (HTTP and gRPC
                # backends never half-close), e.g. an idle keep-alive connection closed while draining.
                # Waiting for the client, which may keep it open for minutes, would only delay exit.
                await _relay(backend_reader, writer)
            finally:
                upstream.cancel()
                await asyncio.wait([upstream])
            await _linger(lambda: reader.read(RELAY_CHUNK))
        except (TimeoutError, ConnectionError, OSError, asyncio.CancelledError):
            pass
        finally:
            for w in (backend_writer, writer):
                if w is not None:
                    with contextlib.suppress(Exception):
                        w.close()
            self._connections.discard(task)
