"""Ports picked for servers that bind later lie outside the ephemeral range, so no client connection takes them."""

import socket

from vslim.netports import _ephemeral_start, listening_port


def test_listening_ports_are_free_and_below_the_ephemeral_range():
    first = listening_port()
    second = listening_port(taken=(first,))
    assert first != second
    for port in (first, second):
        assert port < _ephemeral_start()
        with socket.socket() as s:
            s.bind(("0.0.0.0", port))  # free on every interface, as Ray's proxies bind
