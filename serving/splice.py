"""The port sharer's kernel relay: ``splice(2)`` through a pipe, so a request's bytes never enter Python.

The stream relay (``portshare.py``) reads every chunk into a Python ``bytes`` and writes it out again: two
copies and an event-loop round trip per 256 KiB, paid by every 4.8 MB R50 request while inference threads
want the CPU (measured: 3-4 ms per gRPC request). Here each direction moves data socket -> pipe -> socket
with ``os.splice``: the kernel moves page references into the pipe and copies once into the other socket,
and Python only sees byte counts. The connection is sniffed with ``MSG_PEEK``, so the first bytes stay in
the socket and travel with the rest.

Used on Linux for connections without TLS (TLS is terminated in Python, so its plaintext exists only there);
half-closes pass through (``shutdown(SHUT_WR)`` on the other side), and every wait is on the event loop's
own readiness callbacks.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import select
import socket

PIPE_BYTES = 1 << 20  # a pipe holds this much in flight (Linux's default ceiling for unprivileged processes)
_SPLICE_FLAGS = getattr(os, "SPLICE_F_MOVE", 1) | getattr(os, "SPLICE_F_NONBLOCK", 2)
_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)


def available() -> bool:
    """``os.splice`` exists (Linux, Python 3.10+)."""
    return hasattr(os, "splice")


async def _ready(fd: int, writable: bool) -> None:
    """Wait until ``fd`` can be read (or written) without blocking."""
    loop = asyncio.get_running_loop()
    future = loop.create_future()
    add, remove = (loop.add_writer, loop.remove_writer) if writable else (loop.add_reader, loop.remove_reader)

    def wake() -> None:
        if not future.done():
            future.set_result(None)

    add(fd, wake)
    try:
        await future
    finally:
        remove(fd)


async def peek(sock: socket.socket, wanted: int, timeout: float) -> bytes:
    """The first ``wanted`` bytes of ``sock`` without consuming them (fewer when the client closed its side
    first; b"" for none), or TimeoutError.

    A client that sends fewer bytes and waits is polled with a growing pause: the socket stays readable while
    its bytes are unread, so waiting for readiness again would spin."""
    async with asyncio.timeout(timeout):
        await _ready(sock.fileno(), writable=False)
        pause = 0.001
        while True:
            head = sock.recv(wanted, socket.MSG_PEEK)
            if len(head) >= wanted or not head or _sender_closed(sock):
                return head
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.05)


def _sender_closed(sock: socket.socket) -> bool:
    """The client shut down its sending side (``POLLRDHUP``), so no more bytes will come."""
    poller = select.poll()
    poller.register(sock, select.POLLRDHUP)
    return any(events & (select.POLLRDHUP | select.POLLHUP) for _, events in poller.poll(0))


async def pump(src: socket.socket, dst: socket.socket) -> None:
    """Move everything from ``src`` to ``dst`` until ``src`` ends, then half-close ``dst`` (``SHUT_WR``).

    Ends quietly when either side resets; the caller closes the sockets."""
    read_end, write_end = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    with contextlib.suppress(OSError):
        fcntl.fcntl(write_end, _F_SETPIPE_SZ, PIPE_BYTES)
    s, d = src.fileno(), dst.fileno()
    try:
        while True:
            try:
                moved = os.splice(s, write_end, PIPE_BYTES, flags=_SPLICE_FLAGS)
            except BlockingIOError:
                await _ready(s, writable=False)
                continue
            if moved == 0:  # the sender closed (or half-closed) its side
                break
            while moved:
                try:
                    moved -= os.splice(read_end, d, moved, flags=_SPLICE_FLAGS)
                except BlockingIOError:
                    await _ready(d, writable=True)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)
    except (ConnectionError, OSError):
        pass
    finally:
        os.close(read_end)
        os.close(write_end)
