"""Sandbox listening sockets carry TCP_NODELAY (accepted connections inherit it): without it every answer written in
two parts waited ~40 ms for the client's delayed ACK, 43 ms a call where a real API takes a few."""

from __future__ import annotations

import socket

from ml_connector.sandbox.serve import _bind


def test_every_listening_socket_sends_without_waiting_for_an_ack() -> None:
    sockets = _bind(["127.0.0.1", "127.0.0.2"], 0)
    try:
        assert [s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) for s in sockets] == [1, 1]
        assert len({s.getsockname()[1] for s in sockets}) == 1  # one port on every host
    finally:
        for sock in sockets:
            sock.close()
