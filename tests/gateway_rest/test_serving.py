"""The edge's listening socket."""

from __future__ import annotations

import socket

import pytest

from gateway_rest.serving import listening_socket


def test_the_listening_socket_says_tcp_so_connections_get_nodelay():
    # asyncio sets TCP_NODELAY only on sockets whose proto is IPPROTO_TCP (else ~40 ms per response).
    with listening_socket("127.0.0.1", 0) as sock:
        assert sock.proto == socket.IPPROTO_TCP
        assert sock.get_inheritable()  # the worker processes inherit it


def test_a_port_in_use_fails_loudly():
    with listening_socket("127.0.0.1", 0) as taken, pytest.raises(OSError, match="in use"):
        listening_socket("127.0.0.1", taken.getsockname()[1]).close()
