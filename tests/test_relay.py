"""The one-port relay in process, on real sockets: the kernel relay (``splice``) and the stream relay (TLS's).

Two stand-in backends on Unix sockets tell which one a connection reached and what it sent: ``grpc``
(chosen by the HTTP/2 preface) echoes every byte back with a prefix once its client half-closes, ``http``
answers each complete line. What these tests claim is the relay's: bytes unchanged in both directions
(large and in odd pieces), the first bytes peeked and still delivered, half-closes passed on, a flood of idle
or silent connections not holding up a real one, a client that vanishes mid-upload, and the answer of a
backend that closes early still reaching its client. The server tests run the same relay under real
protocols.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import tempfile
import threading
from pathlib import Path

import pytest

from vslim.serving import splice
from vslim.serving.portshare import H2_PREFACE, PortSharer

pytestmark = pytest.mark.skipif(not splice.available(), reason="os.splice is Linux-only")


class Relay:
    """A PortSharer on 127.0.0.1 with the two stand-in backends, all on one event loop in a thread."""

    def __init__(self, kernel: bool):
        self.folder = Path(tempfile.mkdtemp(prefix="vslim-relay-test-"))
        self.kernel = kernel
        self.loop = asyncio.new_event_loop()
        self.seen: dict[str, list[bytes]] = {"grpc": [], "http": []}
        started = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(started,), daemon=True)
        self.thread.start()
        assert started.wait(10)

    def _run(self, started: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)

        async def grpc_backend(reader, writer):  # echo after the client's half-close
            data = await reader.read()
            self.seen["grpc"].append(data)
            writer.write(b"GRPC:" + data)
            await writer.drain()
            writer.close()

        async def http_backend(reader, writer):  # one answer per line, until the client ends
            received = b""
            while line := await reader.readline():
                received += line
                if not line.endswith(b"\n"):  # the client ended mid-line
                    break
                if line == b"CLOSE\n":  # answer and close while the client may still be sending
                    writer.write(b"BYE\n")
                    await writer.drain()
                    break
                writer.write(b"HTTP:" + line)
                await writer.drain()
            self.seen["http"].append(received)
            writer.close()

        async def main():
            await asyncio.start_unix_server(grpc_backend, str(self.folder / "g.sock"), limit=1 << 24)
            await asyncio.start_unix_server(http_backend, str(self.folder / "h.sock"), limit=1 << 24)
            self.sharer = PortSharer("127.0.0.1", 0, str(self.folder / "g.sock"), str(self.folder / "h.sock"))
            if not self.kernel:
                self.sharer.kernel_relay = False
            self.port = await self.sharer.start()
            started.set()

        self.loop.run_until_complete(main())
        self.loop.run_forever()

    def connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=30)

    def close(self) -> None:
        async def stop():
            await self.sharer.stop_accepting()
            await self.sharer.close_connections(2)

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        shutil.rmtree(self.folder, ignore_errors=True)


@pytest.fixture(params=["kernel", "stream"])
def relay(request):
    r = Relay(request.param == "kernel")
    assert r.sharer.kernel_relay == (request.param == "kernel")
    yield r
    r.close()


def _read_all(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(1 << 20):
        chunks.append(chunk)
    return b"".join(chunks)


def test_large_bytes_cross_unchanged_both_ways_and_the_half_close_passes_on(relay):
    payload = H2_PREFACE + os.urandom(9 << 20)  # 9 MiB: past every socket and pipe buffer
    with relay.connect() as s:
        sender = threading.Thread(target=lambda: (s.sendall(payload), s.shutdown(socket.SHUT_WR)))
        sender.start()
        answer = _read_all(s)
        sender.join(30)
    assert answer == b"GRPC:" + payload and relay.seen["grpc"] == [payload]


def test_the_sniffed_bytes_arrive_in_odd_pieces_and_still_reach_the_backend(relay):
    with relay.connect() as s:
        for piece in (b"P", b"O", b"ST / x\n", b"second line\n"):  # the head in 1-byte pieces
            s.sendall(piece)
            if piece == b"O":
                threading.Event().wait(0.05)
        s.shutdown(socket.SHUT_WR)
        answer = _read_all(s)
    assert answer == b"HTTP:POST / x\nHTTP:second line\n"


def test_a_flood_of_silent_and_vanishing_connections_does_not_hold_up_a_real_one(relay):
    silent = [relay.connect() for _ in range(150)]  # connected, never a byte
    for _ in range(100):  # gone mid-upload
        with relay.connect() as s:
            s.sendall(b"GET /" + b"x" * 100_000)
    one_byte = relay.connect()
    one_byte.sendall(b"P")  # a head that never completes
    with relay.connect() as s:
        s.sendall(b"GET /health\n")
        s.shutdown(socket.SHUT_WR)
        assert _read_all(s) == b"HTTP:GET /health\n"
    for s in [*silent, one_byte]:
        s.close()


def test_a_partial_head_then_close_is_not_held(relay):
    """One byte, then the client's half-close: the relay must not wait the sniff timeout (30 s) for three.
    The kernel relay passes the byte on (the backend decides); the stream relay drops the connection."""
    with relay.connect() as s:
        s.sendall(b"G")
        s.shutdown(socket.SHUT_WR)
        s.settimeout(10)
        assert _read_all(s) == b""
    if relay.kernel:
        for _ in range(100):
            if relay.seen["http"]:
                break
            threading.Event().wait(0.05)
        assert relay.seen["http"] == [b"G"]


def test_an_answer_sent_while_the_client_still_uploads_reaches_it(relay):
    with relay.connect() as s:
        s.sendall(b"CLOSE\n")
        try:
            for _ in range(32):  # 32 MiB: more than the buffers hold, sent whatever the backend does
                s.sendall(b"y" * (1 << 20))
        except (BrokenPipeError, ConnectionResetError) as exc:
            pytest.fail(f"the connection was reset while uploading ({exc})")
        assert s.recv(100) == b"BYE\n"


def test_an_http_connection_is_handed_over_with_its_first_bytes_unread_and_grpc_still_spliced():
    """vslim-serve's HTTP server adopts HTTP connections (no relay); the sniff must leave every byte for it."""
    r = Relay(kernel=True)
    adopted: list[bytes] = []

    async def adopt(sock: socket.socket) -> None:  # as uvicorn would: read the request, answer, close
        loop = asyncio.get_running_loop()
        data = b""
        while not data.endswith(b"\n\n"):
            data += await loop.sock_recv(sock, 1 << 16)
        adopted.append(data)
        await loop.sock_sendall(sock, b"ADOPTED:" + data)
        sock.close()

    try:
        r.sharer.http_handoff = adopt
        with r.connect() as s:
            s.sendall(b"GET /v2/health/ready\n\n")
            assert _read_all(s) == b"ADOPTED:GET /v2/health/ready\n\n"
        with r.connect() as s:
            s.sendall(H2_PREFACE + b"frames")
            s.shutdown(socket.SHUT_WR)
            assert _read_all(s) == b"GRPC:" + H2_PREFACE + b"frames"
        assert adopted == [b"GET /v2/health/ready\n\n"] and r.seen["http"] == []  # never relayed
    finally:
        r.close()
