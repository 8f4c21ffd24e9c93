"""Bare-socket probes of a Redis and a proxy on loopback.

The all-in-one grid asks its embedded Redis whether it is up, and its proxy
whether the grid is ready, with these. They speak over plain sockets: they
need nothing else, and redis-py (about 20 MiB) or urllib with ssl (8 MiB)
would cost a process that uses no more than this.
"""

from __future__ import annotations

import json
import socket

STATUS_REQUEST = b"GET /status HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n"


def answers_ping(port: int) -> bool:
    """Whether a Redis on loopback `port` answers PING."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def proxy_status(port: int) -> dict[str, object]:
    """The value of the proxy's /status on loopback `port`; {} if none."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as conn:
            conn.sendall(STATUS_REQUEST)
            answer = b"".join(iter(lambda: conn.recv(65536), b""))
        head, _, body = answer.partition(b"\r\n\r\n")
        if not head.startswith((b"HTTP/1.1 200 ", b"HTTP/1.0 200 ")):
            return {}
        return dict(json.loads(body)["value"])
    except (OSError, ValueError, KeyError, TypeError):
        return {}
