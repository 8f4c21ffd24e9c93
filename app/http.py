"""HTTP plumbing shared by the proxy and the node: forwarding over kept-alive
connections, and the WSGI helpers both need.
"""

from __future__ import annotations

import contextlib
import http.client
import logging
import select
import socket
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import gevent
from gevent.pywsgi import WSGIHandler

from app.errors import InvalidArgument, WebDriverError

log = logging.getLogger(__name__)

# Headers that concern one connection only (RFC 9110, section 7.6.1).
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)

CHUNK = 256 * 1024
Environ = dict[str, Any]
StartResponse = Callable[..., Any]
Headers = list[tuple[str, str]]
JSON_TYPE = "application/json; charset=utf-8"


class Response:
    """An upstream's answer, read whole."""

    __slots__ = ("body", "closing", "headers", "reason", "status")

    def __init__(
        self,
        status: int,
        reason: str,
        headers: Headers,
        body: bytes,
        *,
        closing: bool = False,
    ) -> None:
        self.status = status
        self.reason = reason
        self.headers = headers
        self.body = body
        self.closing = closing


_STALE = (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError)


def nodelay(sock: socket.socket) -> None:
    """Send small writes at once. NOTE: gevent writes a response's headers
    and body in two sends; with Nagle's algorithm on, the second waits for
    the peer's delayed ACK, about 40 ms a command."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _Connection(http.client.HTTPConnection):
    def connect(self) -> None:
        super().connect()
        nodelay(self.sock)


class Upstream:
    """Kept-alive connections to one `host:port`, reused across requests."""

    def __init__(self, address: str, *, timeout: float | None = None) -> None:
        self.address = address
        host, _, port = address.rpartition(":")
        self.host = host
        self.port = int(port)
        self.timeout = timeout
        self._idle: list[http.client.HTTPConnection] = []

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None,
        headers: dict[str, str],
        *,
        timeout: float | None = None,
    ) -> Response:
        """Send one request and read its answer whole."""
        answer = self.stream(method, path, body, headers, timeout=timeout)
        try:
            data = b"".join(answer)
        finally:
            answer.close()
        return Response(
            answer.status, answer.reason, answer.headers, data, closing=answer.closing
        )

    def stream(
        self,
        method: str,
        path: str,
        body: bytes | None,
        headers: dict[str, str],
        *,
        timeout: float | None = None,
    ) -> Streamed:
        """Send one request; the answer's body is read as it is iterated.
        A reused connection that turns out closed is retried once."""
        conn, reused = self._checkout(timeout)
        try:
            try:
                raw = self._send(conn, method, path, body, headers)
            except _STALE:
                if not reused:
                    raise
                conn.close()
                conn, _ = self._checkout(timeout, fresh=True)
                raw = self._send(conn, method, path, body, headers)
        except BaseException:
            # NOTE: BaseException, so that a request abandoned by its client
            # (its greenlet killed) never leaves a half-read connection idle.
            conn.close()
            raise
        return Streamed(self, conn, raw)

    def close(self) -> None:
        while self._idle:
            self._idle.pop().close()

    def _checkout(
        self, timeout: float | None, *, fresh: bool = False
    ) -> tuple[http.client.HTTPConnection, bool]:
        if self._idle and not fresh:
            conn = self._idle.pop()
            conn.timeout = timeout or self.timeout
            if conn.sock is not None:
                conn.sock.settimeout(conn.timeout)
            return conn, True
        conn = _Connection(self.host, self.port, timeout=timeout or self.timeout)
        return conn, False

    def _send(
        self,
        conn: http.client.HTTPConnection,
        method: str,
        path: str,
        body: bytes | None,
        headers: dict[str, str],
    ) -> http.client.HTTPResponse:
        conn.request(method, path, body=body, headers=headers)
        return conn.getresponse()

    def checkin(self, conn: http.client.HTTPConnection) -> None:
        """Keep `conn` for the next request, or close it if enough are kept."""
        if len(self._idle) >= 8:
            conn.close()
        else:
            self._idle.append(conn)


class Streamed:
    """An upstream's answer whose body is read while it is iterated; the
    connection goes back to its pool once the body has been read whole."""

    def __init__(
        self,
        upstream: Upstream,
        conn: http.client.HTTPConnection,
        raw: http.client.HTTPResponse,
    ) -> None:
        self.upstream = upstream
        self.conn = conn
        self.raw = raw
        self.status = raw.status
        self.reason = raw.reason
        self.closing = bool(raw.will_close)
        self.headers = [
            (k, v) for k, v in raw.getheaders() if k.lower() not in HOP_BY_HOP
        ]

    def __iter__(self) -> Iterator[bytes]:
        while chunk := self.raw.read(CHUNK):
            yield chunk

    def close(self) -> None:
        if self.raw.isclosed() and not self.closing:
            self.upstream.checkin(self.conn)
        else:
            self.conn.close()


class ClientSocketHandler(WSGIHandler):
    """gevent's handler, with the client's socket in the environ, so that a
    long request can notice that its client has gone."""

    def handle(self) -> None:
        nodelay(self.socket)
        super().handle()

    def get_environ(self) -> Environ:
        environ: Environ = super().get_environ()
        environ["webgrid.socket"] = self.socket
        environ["webgrid.target"] = self.path
        return environ


def client_gone(environ: Environ) -> bool:
    """Whether the client of this request has closed its connection."""
    sock = environ.get("webgrid.socket")
    if sock is None:
        return False
    try:
        readable, _, _ = select.select([sock], [], [], 0)
        return bool(readable) and sock.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


def read_body(environ: Environ, limit: int) -> bytes:
    """The request body, refusing one larger than `limit` bytes."""
    length = environ.get("CONTENT_LENGTH") or ""
    stream = environ["wsgi.input"]
    if length.isdigit():
        size = int(length)
        if size > limit:
            raise _too_large(limit)
        return stream.read(size) if size else b""
    if "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower():
        data = stream.read(limit + 1)
        if len(data) > limit:
            raise _too_large(limit)
        return bytes(data)
    return b""


def _too_large(limit: int) -> InvalidArgument:
    return InvalidArgument(
        f"the request body is larger than {limit} bytes, the grid's limit; "
        "send less, or raise WEBGRID_MAX_BODY_MB"
    )


def request_headers(environ: Environ, host: str) -> dict[str, str]:
    """The end-to-end headers of a WSGI request, addressed to `host`."""
    headers = {"Host": host}
    dropped = HOP_BY_HOP | _connection_options(environ.get("HTTP_CONNECTION", ""))
    for key, value in environ.items():
        if key.startswith("HTTP_"):
            name = key[5:].replace("_", "-").title()
            if name.lower() not in dropped and name != "Host":
                headers[name] = value
    if environ.get("CONTENT_TYPE"):
        headers["Content-Type"] = environ["CONTENT_TYPE"]
    return headers


def _connection_options(connection: str) -> frozenset[str]:
    """Header names the `Connection` header marks as hop-by-hop."""
    return frozenset(n.strip().lower() for n in connection.split(",") if n.strip())


def reply(
    start_response: StartResponse, status: int, body: bytes, headers: Headers
) -> Iterable[bytes]:
    """Answer a WSGI request with a whole body."""
    reason = http.client.responses.get(status, "Unknown")
    out = [(k, v) for k, v in headers if k.lower() != "content-length"]
    out.append(("Content-Length", str(len(body))))
    start_response(f"{status} {reason}", out)
    return [body]


def reply_json(
    start_response: StartResponse, status: int, body: bytes
) -> Iterable[bytes]:
    return reply(
        start_response,
        status,
        body,
        [("Content-Type", JSON_TYPE), ("Cache-Control", "no-cache")],
    )


def reply_error(
    start_response: StartResponse, error: WebDriverError
) -> Iterable[bytes]:
    """Answer with the W3C error body and status of `error`."""
    return reply_json(start_response, error.status, error.to_bytes())


def is_upgrade(environ: Environ) -> bool:
    """Whether the request asks to become a WebSocket."""
    return str(environ.get("HTTP_UPGRADE", "")).lower() == "websocket"


def tunnel(
    environ: Environ,
    start_response: StartResponse,
    address: str,
    path: str,
    *,
    drop: frozenset[str] = frozenset(),
) -> Iterable[bytes]:
    """Hand a WebSocket upgrade to `address` at `path`, then pass bytes both
    ways until either side closes. `drop` names request headers to leave out
    (lower case)."""
    host, _, port = address.rpartition(":")
    upstream = socket.create_connection((host, int(port)), timeout=30)
    nodelay(upstream)
    try:
        upstream.sendall(_upgrade_request(environ, address, path, drop))
        status, headers, early = _read_head(upstream)
        if status != 101:
            return reply(start_response, status, early, headers)
        write = start_response("101 Switching Protocols", headers)
        write(b"")
        _splice(environ["webgrid.socket"], upstream, early)
        return []
    finally:
        upstream.close()


def _upgrade_request(
    environ: Environ, address: str, path: str, drop: frozenset[str]
) -> bytes:
    lines = [f"GET {path} HTTP/1.1", f"Host: {address}"]
    for key, value in environ.items():
        if not key.startswith("HTTP_"):
            continue
        name = key[5:].replace("_", "-").title()
        if name.lower() not in drop and name != "Host":
            lines.append(f"{name}: {value}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _read_head(sock: socket.socket) -> tuple[int, Headers, bytes]:
    """Status, headers and the bytes read past them, of an HTTP answer."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionResetError("the upstream closed during the upgrade")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = [
        (name.strip(), value.strip())
        for name, _, value in (line.partition(":") for line in header_lines)
    ]
    return int(status_line.split()[1]), headers, rest


def _splice(client: socket.socket, upstream: socket.socket, early: bytes) -> None:
    """Copy bytes both ways; return when either side has closed."""
    upstream.settimeout(None)
    if early:
        client.sendall(early)
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
