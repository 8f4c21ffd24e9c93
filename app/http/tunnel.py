"""WebSocket tunnels: hand an upgrade request on, then pass bytes both ways
until either side closes."""

from __future__ import annotations

import contextlib
import socket

import gevent

from app.http.messages import (
    TAKEN,
    Answer,
    Body,
    Reader,
    Request,
    answer_head,
    encode_headers,
    status_line,
)
from app.http.server import nodelay

CONNECT_TIMEOUT = 30.0


def is_upgrade(request: Request) -> bool:
    """Whether the request asks to become a WebSocket."""
    return request.header("upgrade").lower() == "websocket"


def tunnel(
    request: Request, address: str, path: str, *, drop: frozenset[str] = frozenset()
) -> Answer:
    """Open the WebSocket at `address` and `path` for `request`'s client.
    `drop` names request headers to leave out (lower case). An upstream
    that refuses the upgrade has its answer passed on."""
    host, _, port = address.rpartition(":")
    upstream = socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT)
    nodelay(upstream)
    try:
        upstream.sendall(_upgrade_request(request, address, path, drop))
        reader = Reader(upstream)
        start, headers, fields = answer_head(reader)
        if start[1] != "101":
            length = fields.get("content-length", "0").strip()
            body = Body(reader, int(length) if length.isdigit() else 0).read(2**20)
            return Answer(int(start[1]), _content_type(headers), body, close=True)
        head = status_line(101) + encode_headers(headers) + "\r\n"
        request.sock.sendall(head.encode("latin-1"))
        _splice(request, upstream, reader.rest())
        return TAKEN
    finally:
        upstream.close()


def _content_type(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return [(n, v) for n, v in headers if n.lower() == "content-type"]


def _upgrade_request(
    request: Request, address: str, path: str, drop: frozenset[str]
) -> bytes:
    kept = [
        (name, value)
        for name, value in request.headers
        if name.lower() not in drop and name.lower() != "host"
    ]
    head = f"GET {path} HTTP/1.1\r\nHost: {address}\r\n" + encode_headers(kept)
    return (head + "\r\n").encode("latin-1")


def _splice(request: Request, upstream: socket.socket, early: bytes) -> None:
    """Copy bytes both ways; return when either side has closed."""
    client = request.sock
    upstream.settimeout(None)
    if early:
        client.sendall(early)
    pending = request.reader.rest()
    if pending:
        upstream.sendall(pending)
    pumps = [
        gevent.spawn(_pump, client, upstream),
        gevent.spawn(_pump, upstream, client),
    ]
    gevent.joinall(pumps, count=1)
    gevent.killall(pumps)
    with contextlib.suppress(OSError):
        client.shutdown(socket.SHUT_RDWR)


def _pump(source: socket.socket, target: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            target.sendall(data)
