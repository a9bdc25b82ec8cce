"""A free TCP port for a server that another process binds later (Ray's proxies).

A port the kernel hands out with ``bind(0)`` comes from the ephemeral range, the same
range outgoing connections draw from: in a busy process (a test session, a benchmark
with thousands of requests) one of them may take it before the server binds it, and
Ray's proxy then fails with "Failed to bind". Ports below that range are only taken by
listeners, so a port found free there stays free until the server binds it.
"""

from __future__ import annotations

import errno
import random
import socket
from pathlib import Path

FALLBACK_EPHEMERAL_START = 32768  # Linux's default ip_local_port_range starts here
LOWEST = 20000


def _ephemeral_start() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return FALLBACK_EPHEMERAL_START


def _free(port: int) -> bool:
    for family, host in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
        try:
            with socket.socket(family) as s:
                s.bind((host, port))
        except OSError as exc:
            if family == socket.AF_INET6 and exc.errno in (errno.EAFNOSUPPORT, errno.EADDRNOTAVAIL):
                continue  # no IPv6 on this host
            return False
    return True


def listening_port(taken: tuple[int, ...] = ()) -> int:
    """A port free on every interface, outside the ephemeral range (``bind(0)`` there as the last resort)."""
    top = _ephemeral_start()
    if top - LOWEST > 100:
        for port in random.sample(range(LOWEST, top), 200):
            if port not in taken and _free(port):
                return port
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
