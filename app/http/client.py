"""Requests to one upstream (a node, a driver, a manager) over connections
kept alive and reused, with answers whose bodies stream.
"""

from __future__ import annotations

import contextlib
import select
import socket
import time
from collections.abc import Iterator

from app.http.messages import (
    BadMessage,
    Body,
    Headers,
    Reader,
    answer_head,
    encode_headers,
    end_to_end,
    send_all,
)
from app.http.server import nodelay

# Idle connections kept per upstream.
KEEP = 8
# Seconds a connection may sit idle before it is checked on reuse.
FRESH = 1.0
_STALE = (BrokenPipeError, ConnectionResetError)
# Methods whose requests carry a Content-Length even when the body is empty.
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


class Connection:
    """One connection to the upstream."""

    __slots__ = ("hung_up", "idle_since", "reader", "sock", "timeout")

    def __init__(self, sock: socket.socket, timeout: float | None) -> None:
        self.sock = sock
        self.reader = Reader(sock)
        self.timeout = timeout
        self.idle_since = 0.0
        self.hung_up = False

    def set_timeout(self, timeout: float | None) -> None:
        if timeout != self.timeout:
            self.sock.settimeout(timeout)
            self.timeout = timeout

    def dropped(self) -> bool:
        """Whether the upstream closed this idle connection (or sent bytes
        nobody asked for, which makes it unusable too)."""
        try:
            readable, _, _ = select.select([self.sock], [], [], 0)
        except (OSError, ValueError):
            return True
        return bool(readable)

    def close(self) -> None:
        self.sock.close()


class Reply:
    """An upstream's answer: status and end-to-end headers read, the body
    read as it is iterated. The connection goes back to its pool once the
    body has been read whole, or is closed by `close()`."""

    def __init__(
        self,
        upstream: Upstream,
        conn: Connection,
        start: list[str],
        headers: Headers,
        fields: dict[str, str],
        method: str,
    ) -> None:
        self.upstream = upstream
        self.conn = conn
        self.status = int(start[1])
        self.reason = " ".join(start[2:])
        self.headers = end_to_end(headers, fields)
        self.closing = "close" in fields.get("connection", "").lower()
        self.body = _answer_body(conn.reader, self.status, fields, method)
        self.length = self.body.length
        if self.length is None and not self.body.chunked:
            self.closing = True
        self._released = False

    def __iter__(self) -> Iterator[bytes]:
        yield from self.body
        self.close()

    def read(self, limit: int = 2**40) -> bytes:
        """The whole body."""
        try:
            return self.body.read(limit)
        finally:
            self.close()

    def close(self) -> None:
        """Give the connection back if the body was read whole, else close."""
        if self._released:
            return
        self._released = True
        self.upstream.release(self.conn, reuse=self.body.done and not self.closing)

    def done(self, whole: bool) -> None:
        """For `Answer.done`: called once the body has gone on, or not."""
        self.close()


class Upstream:
    """Kept-alive connections to one `host:port`."""

    def __init__(self, address: str, *, timeout: float | None = None) -> None:
        self.address = address
        host, _, port = address.rpartition(":")
        self.host = host.strip("[]")
        self.port = int(port)
        self.timeout = timeout
        self._idle: list[Connection] = []
        self._busy: set[Connection] = set()

    def send(
        self,
        method: str,
        target: str,
        headers: Headers,
        body: bytes | Body = b"",
        *,
        timeout: float | None = None,
    ) -> Reply:
        """Send a request (`headers` are end-to-end ones: Host and framing
        are set here) and read the answer's head. A reused connection found
        closed is replaced once, if the body can be sent again."""
        head = _request_head(method, target, self.address, headers, body)
        conn, reused = self._checkout(timeout)
        self._busy.add(conn)
        try:
            try:
                return self._exchange(conn, head, body, method)
            except _STALE:
                if not reused or not isinstance(body, bytes):
                    raise
                self.release(conn, reuse=False)
                conn = self._connect(timeout)
                self._busy.add(conn)
                return self._exchange(conn, head, body, method)
        except BaseException:
            # NOTE: BaseException, so that a request abandoned by its client
            # (its greenlet killed) never leaves a half-used connection idle.
            self.release(conn, reuse=False)
            raise

    def request(
        self,
        method: str,
        target: str,
        headers: Headers | None = None,
        body: bytes = b"",
        *,
        timeout: float | None = None,
    ) -> tuple[int, bytes]:
        """Send a request; its answer's status and whole body."""
        reply = self.send(method, target, headers or [], body, timeout=timeout)
        return reply.status, reply.read()

    def release(self, conn: Connection, *, reuse: bool) -> None:
        """Keep a connection whose exchange is over for the next request, or
        close it."""
        self._busy.discard(conn)
        if reuse and not conn.hung_up and len(self._idle) < KEEP:
            conn.idle_since = time.monotonic()
            self._idle.append(conn)
        else:
            conn.close()

    def hang_up(self) -> None:
        """Stop sending on every connection in use, as a client that leaves
        does: the upstream reads the end of the request stream, and what it
        answers can still be read."""
        for conn in self._busy:
            conn.hung_up = True
            with contextlib.suppress(OSError):
                conn.sock.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        while self._idle:
            self._idle.pop().close()

    def _checkout(self, timeout: float | None) -> tuple[Connection, bool]:
        while self._idle:
            conn = self._idle.pop()
            # NOTE: upstreams close idle connections after seconds, not
            # milliseconds; one idle a moment is not worth a system call.
            recent = time.monotonic() - conn.idle_since < FRESH
            if not recent and conn.dropped():
                conn.close()
                continue
            conn.set_timeout(timeout or self.timeout)
            return conn, True
        return self._connect(timeout), False

    def _connect(self, timeout: float | None) -> Connection:
        timeout = timeout or self.timeout
        sock = socket.create_connection((self.host, self.port), timeout=timeout)
        nodelay(sock)
        return Connection(sock, timeout)

    def _exchange(
        self, conn: Connection, head: bytes, body: bytes | Body, method: str
    ) -> Reply:
        if isinstance(body, bytes):
            send_all(conn.sock, head + body)
        else:
            send_all(conn.sock, head)
            _send_body(conn.sock, body)
        while True:
            start, headers, fields = answer_head(conn.reader)
            if start[1] != "100":
                return Reply(self, conn, start, headers, fields, method)


def _request_head(
    method: str, target: str, host: str, headers: Headers, body: bytes | Body
) -> bytes:
    if isinstance(body, bytes):
        sized = body or method in BODY_METHODS
        framing = f"Content-Length: {len(body)}\r\n" if sized else ""
    elif body.length is not None:
        framing = f"Content-Length: {body.length}\r\n"
    else:
        framing = "Transfer-Encoding: chunked\r\n"
    text = f"{method} {target} HTTP/1.1\r\nHost: {host}\r\n"
    return (text + encode_headers(headers) + framing + "\r\n").encode("latin-1")


def _send_body(sock: socket.socket, body: Body) -> None:
    """Stream a request body on, keeping its framing."""
    if body.length is not None:
        for chunk in body:
            sock.sendall(chunk)
        return
    for chunk in body:
        sock.sendall(b"%x\r\n%b\r\n" % (len(chunk), chunk))
    sock.sendall(b"0\r\n\r\n")


def _answer_body(
    reader: Reader, status: int, fields: dict[str, str], method: str
) -> Body:
    """The body of an answer, framed as RFC 9112 section 6.3 says."""
    if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
        return Body.empty(reader)
    if "chunked" in fields.get("transfer-encoding", "").lower():
        return Body(reader, None, chunked=True)
    length = fields.get("content-length")
    if length is not None:
        if not length.strip().isdigit():
            raise BadMessage(f"an answer's Content-Length is {length[:50]!r}")
        return Body(reader, int(length))
    return Body(reader, None)
