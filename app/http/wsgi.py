"""What the manager, a Flask application under gevent's WSGI server, needs:
the client's socket in the environ, to notice a client that has left."""

from __future__ import annotations

import select
import socket
from typing import Any

from gevent.pywsgi import WSGIHandler

from app.http.server import nodelay


class ClientSocketHandler(WSGIHandler):  # type: ignore[misc]
    """gevent's handler, with the client's socket in the environ, so that a
    long request can notice that its client has gone."""

    def handle(self) -> None:
        nodelay(self.socket)
        super().handle()

    def get_environ(self) -> dict[str, Any]:
        environ: dict[str, Any] = super().get_environ()
        environ["webgrid.socket"] = self.socket
        return environ


def client_gone(sock: socket.socket | None) -> bool:
    """Whether the client on `sock` has closed its connection."""
    if sock is None:
        return False
    try:
        readable, _, _ = select.select([sock], [], [], 0)
        return bool(readable) and sock.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True
