"""How gunicorn's sync workers close a client connection (installed by gunicorn.conf.py).

gunicorn 27 closes every connection "gracefully" (``gunicorn.util.close_graceful``, RFC 9112 § 9.6): it
half-closes, then reads until the client closes its end or 2 s pass, so that request bytes it never read
cannot make the kernel answer with a reset that destroys the response. A sync worker serves one connection at
a time, so during those reads it serves nobody: a client slow to close (a saturated load generator, a client
that ignores ``Connection: close``) holds the worker for up to 2 s per request. Under load in `make
bench-serve` that turned into a collapse: workers idle, thousands of requests timed out.

:func:`close_after_response` keeps the protection where it is needed and drops the wait where it is not:
after the half-close it looks, without blocking, at what the client has sent. Nothing unread (the usual case:
the app read the whole request) → close at once: the kernel sends FIN, no reset. Unread bytes waiting (say a
body refused with 413 before it was read) → gunicorn's own lingering close, as before.
"""

from __future__ import annotations

import socket

from gunicorn import util


def close_after_response(sock: socket.socket, timeout: float = 2.0, max_drain: int = 65536) -> None:
    try:
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        util.close(sock)
        return
    try:
        pending = sock.recv(4096, socket.MSG_DONTWAIT | socket.MSG_PEEK)
    except BlockingIOError:
        pending = None              # nothing sent beyond what was read: no reset can follow the close
    except OSError:
        pending = b""
    if pending:
        _lingering_close(sock, timeout, max_drain)
    else:
        util.close(sock)


def _lingering_close(sock: socket.socket, timeout: float, max_drain: int) -> None:
    """gunicorn's close_graceful after its half-close: read (and drop) until EOF, the cap, or the timeout."""
    sock.settimeout(timeout)
    drained = 0
    try:
        while drained < max_drain:
            data = sock.recv(4096)
            if not data:
                break
            drained += len(data)
    except OSError:                 # socket.timeout included
        pass
    finally:
        util.close(sock)


def install() -> None:
    """Make gunicorn's workers close connections with :func:`close_after_response` (they look the function
    up in ``gunicorn.util`` at each close)."""
    util.close_graceful = close_after_response
