"""Who is at the other end of a relayed connection, for the backends' access log.

The port sharer (``portshare.py``) relays every client connection to the gRPC or the
HTTP backend over a private Unix socket, so a backend alone sees only "a Unix
socket" as its peer. On Linux the relay therefore connects from a socket bound to
an abstract name that carries the client's address
(``vslim-relay/<process>/<n>/<host>/<port>``); a backend reads it back from its
peer address with :func:`relayed_peer`. No registry is shared and nothing is left
behind: abstract names vanish with their socket. Elsewhere, or if the name cannot
be bound, the connection is unnamed and the peer shows as ``-``.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import secrets
import socket
import sys
from urllib.parse import unquote

PREFIX = "vslim-relay/"
MAX_NAME = 107  # sun_path holds 108 bytes, the leading NUL included
_PROCESS = f"{os.getpid()}.{secrets.token_hex(4)}"  # a pod's containers share abstract names, not pid numbers
_COUNTER = itertools.count()


def relay_name(peer) -> str | None:
    """The abstract socket name for a connection from ``peer`` (asyncio's ``peername``), None if it has none."""
    if not isinstance(peer, (tuple, list)) or len(peer) < 2:
        return None
    host, port = str(peer[0]), peer[1]
    name = f"{PREFIX}{_PROCESS}/{next(_COUNTER)}/{host}/{port}"
    return name if "/" not in host and len(name.encode()) <= MAX_NAME else None


async def connect_backend(path: str, peer) -> socket.socket:
    """A non-blocking Unix socket connected to ``path``, from a name carrying ``peer`` where the platform allows."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        name = relay_name(peer) if sys.platform.startswith("linux") else None
        if name is not None:
            try:
                sock.bind("\0" + name)
            except OSError:  # taken or refused: the log loses the peer, the connection does not fail
                pass
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, path)
    except BaseException:
        sock.close()
        raise
    return sock


async def open_backend(path: str, peer, limit: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """``asyncio.open_unix_connection(path)`` from a socket named after ``peer`` where the platform allows it."""
    return await asyncio.open_unix_connection(sock=await connect_backend(path, peer), limit=limit)


def relayed_peer(address: str | bytes | tuple | None) -> tuple[str, int] | None:
    """The client ``(host, port)`` a backend connection was relayed for, or None.

    ``address`` is what the backend sees: asyncio's ``peername`` of an accepted Unix
    connection (``b"\\0vslim-relay/..."``) or gRPC's ``context.peer()``
    (``"unix-abstract:vslim-relay/..."``, percent-encoded).
    """
    if isinstance(address, bytes):
        text = address.lstrip(b"\0").decode("utf-8", "replace")
    elif isinstance(address, str):
        text = unquote(address.removeprefix("unix-abstract:")).lstrip("\0")
    else:
        return None
    if not text.startswith(PREFIX):
        return None
    parts = text[len(PREFIX) :].split("/")
    if len(parts) != 4 or not parts[3].isdigit():
        return None
    return parts[2], int(parts[3])


def format_peer(peer: tuple | None) -> str:
    """``host:port`` (``[v6]:port``), or ``-`` when unknown."""
    if not peer:
        return "-"
    host, port = str(peer[0]), peer[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def grpc_peer(peer: str) -> str:
    """A gRPC ``context.peer()`` as an access log shows it: the relayed client, else gRPC's own words."""
    relayed = relayed_peer(peer)
    if relayed:
        return format_peer(relayed)
    kind, _, rest = (peer or "").partition(":")
    if kind in ("ipv4", "ipv6"):
        return unquote(rest)
    return peer or "-"
