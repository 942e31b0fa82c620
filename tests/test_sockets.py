"""How a sync worker closes a connection (webapp/web/sockets.py), on real loopback TCP sockets."""

from __future__ import annotations

import socket
import threading

import pytest

from webapp.web.sockets import close_after_response


@pytest.fixture
def connection():
    """(server side, client side) of one TCP connection on 127.0.0.1."""
    listener = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(listener.getsockname())
    server, _ = listener.accept()
    listener.close()
    yield server, client
    client.close()


def _close_in_thread(server: socket.socket) -> threading.Thread:
    thread = threading.Thread(target=close_after_response, args=(server,))
    thread.start()
    return thread


def test_a_fully_read_request_is_closed_without_waiting_for_the_client(connection):
    server, client = connection
    client.sendall(b"GET / HTTP/1.1\r\n\r\n")
    assert server.recv(1024) == b"GET / HTTP/1.1\r\n\r\n"          # the app read the whole request
    server.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nok")
    thread = _close_in_thread(server)
    thread.join(timeout=1.0)          # gunicorn's own close would wait up to 2 s for the client's FIN
    assert not thread.is_alive()
    assert server.fileno() == -1
    received = b""
    while chunk := client.recv(1024):
        received += chunk
    assert received.endswith(b"\r\n\r\nok")                         # the whole response, then EOF, no reset


def test_unread_request_bytes_keep_the_lingering_close(connection):
    server, client = connection
    client.sendall(b"POST / HTTP/1.1\r\nContent-Length: 100\r\n\r\n" + b"x" * 100)
    server.recv(40)                                                # the app answered before reading it all
    server.sendall(b"HTTP/1.1 413 Payload Too Large\r\nConnection: close\r\n\r\n")
    thread = _close_in_thread(server)
    received = b""
    while chunk := client.recv(1024):                              # no ConnectionResetError: the unread
        received += chunk                                          # bytes were drained, FIN came, no RST
    assert received.startswith(b"HTTP/1.1 413")
    assert thread.is_alive()                                       # still waiting for the client to close
    client.close()
    thread.join(timeout=3.0)
    assert not thread.is_alive()
