"""A lean HTTP/1.1 server on gevent: one greenlet per connection, kept alive
between requests, that hands each request to a handler and writes its
`Answer`.

The proxy and the nodes serve every WebDriver command through it. gevent's
WSGI server parses and builds far more than a command needs and cost about
a quarter of a millisecond of CPU a request; this one does what HTTP/1.1
requires of a server and little else.
"""

from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import Callable
from typing import Any

from gevent.server import StreamServer

from app.errors import UnknownError, WebDriverError
from app.http.messages import (
    TAKEN,
    Answer,
    BadMessage,
    Body,
    Reader,
    Request,
    encode_headers,
    parse_head,
    request_framing,
    send_all,
    status_line,
)

log = logging.getLogger(__name__)

Handler = Callable[[Request], Answer]
JSON_TYPE = "application/json; charset=utf-8"
# Bytes of an unread request body the server reads and drops to keep its
# connection; past this it closes the connection instead.
SKIP_LIMIT = 64 * 1024
# Seconds a closing connection waits for its client to stop sending.
LINGER = 1.0
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
WHOLE = 64 * 1024


def nodelay(sock: socket.socket) -> None:
    """Send small writes at once: with Nagle's algorithm on, a write that
    follows another waits for the peer's delayed ACK, about 40 ms."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def error_answer(error: WebDriverError, headers: Any = ()) -> Answer:
    """The W3C error body and status of `error`."""
    fields = [("Content-Type", JSON_TYPE), ("Cache-Control", "no-cache"), *headers]
    return Answer(error.status, fields, error.to_bytes())


def json_answer(status: int, body: bytes, *, close: bool = False) -> Answer:
    fields = [("Content-Type", JSON_TYPE), ("Cache-Control", "no-cache")]
    return Answer(status, fields, body, close=close)


class Server(StreamServer):  # type: ignore[misc]
    """Serves `handler` on `address` (host, port)."""

    def __init__(self, address: tuple[str, int], handler: Handler) -> None:
        super().__init__(address, self._connection)
        self.handler = handler

    def _connection(self, sock: socket.socket, _peer: Any) -> None:
        nodelay(sock)
        conn = _Connection(sock)
        try:
            while self._exchange(conn):
                pass
            _linger(sock)
        except ConnectionError:
            conn.reset()
        except OSError:
            pass  # the client went away; nothing is left to tell it
        except Exception:
            log.exception("a connection failed")
        finally:
            sock.close()

    def _exchange(self, conn: _Connection) -> bool:
        """Serve one request; whether the connection may carry another."""
        sock = conn.sock
        try:
            request = _read_request(sock, conn.reader)
        except BadMessage as error:
            conn.unread = None
            _write(sock, error_answer(error), keep=False)
            return False
        conn.unread = None  # the client sent again, or closed: it read the answer
        if request is None:
            return False
        answer = self._answer(request)
        if answer is TAKEN:
            return False
        keep = request.keep_alive and not answer.close
        conn.unread = answer.unread
        keep = _write(
            sock, answer, keep=keep, method=request.method, version=request.version
        )
        return keep and request.body.skip(SKIP_LIMIT)

    def _answer(self, request: Request) -> Answer:
        try:
            return self.handler(request)
        except WebDriverError as error:
            return error_answer(error)
        except Exception as exc:
            log.exception("failed on %s %s", request.method, request.path)
            return error_answer(UnknownError(f"the grid failed: {exc!r}"))


class _Connection:
    """One client's connection, and what to do should the client reset it
    before reading the last answer."""

    __slots__ = ("reader", "sock", "unread")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.reader = Reader(sock)
        self.unread: Callable[[], None] | None = None

    def reset(self) -> None:
        """The client reset the connection, or was gone as it was answered.
        NOTE: a client that closes its socket with bytes left unread makes
        its kernel send a reset, not a plain close; before the client's next
        request, those bytes are the last answer."""
        if self.unread is not None:
            self.unread()


def _linger(sock: socket.socket) -> None:
    """Close gently: stop sending, then read and drop what the client still
    sends for a moment. NOTE: closing with unread bytes makes the kernel
    reset the connection, and a reset can destroy the last answer before
    the client has read it."""
    sock.shutdown(socket.SHUT_WR)
    sock.settimeout(LINGER)
    dropped = 0
    while dropped < SKIP_LIMIT * 4 and (data := sock.recv(65536)):
        dropped += len(data)


def _read_request(sock: socket.socket, reader: Reader) -> Request | None:
    head = reader.head()
    if head is None:
        return None
    start, headers, fields = parse_head(head)
    if len(start) != 3 or start[2] not in ("HTTP/1.1", "HTTP/1.0"):
        raise BadMessage(f"not an HTTP/1.1 request line: {' '.join(start)[:100]!r}")
    method, target, version = start
    request = Request(method, target, version, headers, fields, sock, reader)
    length, chunked = request_framing(fields)
    expects = fields.get("expect", "").lower() == "100-continue"
    ask = None
    if expects and version != "HTTP/1.0":
        ask = lambda: sock.sendall(CONTINUE)  # noqa: E731
    request.body = Body(reader, length, chunked=chunked, before_read=ask)
    return request


def _write(
    sock: socket.socket,
    answer: Answer,
    *,
    keep: bool,
    method: str = "GET",
    version: str = "HTTP/1.1",
) -> bool:
    """Send `answer`; whether the connection can carry another request."""
    body = answer.body
    no_body = method == "HEAD" or answer.status in (204, 304)
    head = status_line(answer.status, answer.reason) + encode_headers(answer.headers)
    chunked = False
    if isinstance(body, bytes):
        framing = f"Content-Length: {len(body)}\r\n"
    elif answer.length is not None:
        framing = f"Content-Length: {answer.length}\r\n"
    elif version == "HTTP/1.0":
        # No chunks in HTTP/1.0: the body ends where the connection does.
        framing, keep = "", False
    else:
        framing, chunked = "Transfer-Encoding: chunked\r\n", True
    if not keep:
        framing += "Connection: close\r\n"
    whole = False
    try:
        data = (head + framing + "\r\n").encode("latin-1")
        if no_body:
            send_all(sock, data)
        elif isinstance(body, bytes):
            send_all(sock, data + body if len(body) < WHOLE else data)
            if len(body) >= WHOLE:
                sock.sendall(body)
        else:
            send_all(sock, data)
            _send_stream(sock, body, chunked=chunked)
        whole = True
    finally:
        if answer.done is not None:
            answer.done(whole)
    return keep


def _send_stream(sock: socket.socket, body: Any, *, chunked: bool) -> None:
    for chunk in body:
        if not chunk:
            continue
        if chunked:
            sock.sendall(b"%x\r\n%b\r\n" % (len(chunk), chunk))
        else:
            sock.sendall(chunk)
    if chunked:
        sock.sendall(b"0\r\n\r\n")
