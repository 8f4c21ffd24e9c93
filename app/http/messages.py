"""HTTP/1.1 messages as the proxy and the nodes see them: heads, bodies that
stream, and the answers handlers give.

Only what WebDriver traffic needs is here, and nothing that costs time on
the way of a command: a request's head is read with as few `recv` calls as
it arrived in, parsed once, and its body is read only when someone asks.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from app.errors import InvalidArgument

Headers = list[tuple[str, str]]

CHUNK = 256 * 1024
# Bytes asked of a socket at a time for heads. NOTE: a buffer this small is
# taken from the heap; a larger one is mapped and unmapped at every read.
READ = 64 * 1024
MAX_HEAD = 64 * 1024
# Headers that concern one connection only (RFC 9110, section 7.6.1), and
# those that frame a body, which every hop sets anew.
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
FRAMING = frozenset({"content-length", "expect"})
# What no hop passes on: the above, and Host, which each hop sets anew.
NOT_PASSED = HOP_BY_HOP | FRAMING | {"host"}
TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
REASONS = {
    100: "Continue",
    101: "Switching Protocols",
    200: "OK",
    204: "No Content",
    304: "Not Modified",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    500: "Internal Server Error",
    501: "Not Implemented",
}


class BadMessage(InvalidArgument):
    """A message that breaks HTTP/1.1's rules; its connection cannot go on."""


class Reader:
    """Bytes of one connection, buffered, read a head or a body at a time."""

    __slots__ = ("buffer", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def head(self) -> bytes | None:
        """The next message head, without its blank line; None if the peer
        closed before sending one."""
        start = 0
        while True:
            end = self.buffer.find(b"\r\n\r\n", start)
            if end >= 0:
                head, self.buffer = self.buffer[:end], self.buffer[end + 4 :]
                return head
            if len(self.buffer) > MAX_HEAD:
                raise BadMessage(f"a message head is larger than {MAX_HEAD} bytes")
            start = max(len(self.buffer) - 3, 0)
            data = self.sock.recv(READ)
            if not data:
                if self.buffer.strip():
                    raise BadMessage("the connection closed inside a message head")
                return None
            self.buffer += data

    def some(self, most: int) -> bytes:
        """Up to `most` bytes, at least one; raise if the peer has closed."""
        if self.buffer:
            data, self.buffer = self.buffer[:most], self.buffer[most:]
            return data
        data = self.sock.recv(min(most, CHUNK))
        if not data:
            raise ConnectionResetError("the peer closed inside a message body")
        return data

    def exactly(self, size: int) -> bytes:
        parts = []
        while size:
            data = self.some(size)
            parts.append(data)
            size -= len(data)
        return b"".join(parts)

    def line(self) -> bytes:
        while b"\r\n" not in self.buffer:
            if len(self.buffer) > MAX_HEAD:
                raise BadMessage("a chunk size line is too long")
            data = self.sock.recv(READ)
            if not data:
                raise ConnectionResetError("the peer closed inside a chunked body")
            self.buffer += data
        line, _, self.buffer = self.buffer.partition(b"\r\n")
        return line

    def rest(self) -> bytes:
        """Whatever is buffered, taken out (a tunnel sends it on)."""
        data, self.buffer = self.buffer, b""
        return data


class Body:
    """A message body, read as it is asked for: by length, chunked, or (for
    answers only) up to the connection's close."""

    def __init__(
        self,
        reader: Reader,
        length: int | None,
        *,
        chunked: bool = False,
        before_read: Callable[[], None] | None = None,
    ) -> None:
        self.reader = reader
        self.length = length
        self.chunked = chunked
        self.left = length if length is not None else -1
        self.done = length == 0
        self.before_read = before_read

    @classmethod
    def empty(cls, reader: Reader) -> Body:
        return cls(reader, 0)

    def __iter__(self) -> Iterator[bytes]:
        while chunk := self.next_chunk():
            yield chunk

    def read(self, limit: int) -> bytes:
        """The whole body; `InvalidArgument` if it has more than `limit` bytes."""
        if self.length is not None and self.length > limit:
            raise too_large(limit)
        parts, size = [], 0
        for chunk in self:
            size += len(chunk)
            if size > limit:
                raise too_large(limit)
            parts.append(chunk)
        return b"".join(parts)

    def next_chunk(self) -> bytes:
        """The next bytes of the body; b"" once it has been read whole."""
        if self.done:
            return b""
        if self.before_read is not None:
            self.before_read()
            self.before_read = None
        if self.chunked:
            return self._next_of_chunked()
        if self.left < 0:
            return self._next_until_close()
        data = self.reader.some(min(self.left, CHUNK))
        self.left -= len(data)
        self.done = self.left == 0
        return data

    def skip(self, most: int) -> bool:
        """Read and drop the rest, up to `most` bytes; whether it ended."""
        if self.before_read is not None:
            # Nobody read the body, and the client waits to be told to send it.
            return False
        while not self.done:
            most -= len(self.next_chunk())
            if most < 0:
                return False
        return True

    def _next_of_chunked(self) -> bytes:
        if self.left <= 0:
            if self.left == 0:
                self.reader.exactly(2)
            size = _chunk_size(self.reader.line())
            if size == 0:
                while self.reader.line():
                    pass  # trailer fields, dropped
                self.done = True
                return b""
            self.left = size
        data = self.reader.some(min(self.left, CHUNK))
        self.left -= len(data)
        return data

    def _next_until_close(self) -> bytes:
        data = self.reader.rest() or self.reader.sock.recv(CHUNK)
        self.done = not data
        return data


def _chunk_size(line: bytes) -> int:
    size = line.split(b";", 1)[0].strip()
    try:
        return int(size, 16)
    except ValueError:
        raise BadMessage(f"a chunk size is not hexadecimal: {size[:20]!r}") from None


def too_large(limit: int) -> InvalidArgument:
    return InvalidArgument(
        f"the request body is larger than {limit} bytes, the grid's limit; "
        "send less, or raise WEBGRID_MAX_BODY_MB"
    )


@dataclass(slots=True)
class Request:
    """A request as a server received it; `body` is read on demand."""

    method: str
    target: str
    version: str
    headers: Headers
    fields: dict[str, str]
    sock: socket.socket
    reader: Reader
    body: Body = field(init=False)

    @property
    def path(self) -> str:
        return self.target.partition("?")[0]

    @property
    def query(self) -> str:
        return self.target.partition("?")[2]

    def header(self, name: str) -> str:
        """A header's value (lower-case name), "" if absent."""
        return self.fields.get(name, "")

    @property
    def keep_alive(self) -> bool:
        options = self.fields.get("connection", "").lower()
        if self.version == "HTTP/1.0":
            return "keep-alive" in options
        return "close" not in options


@dataclass(slots=True)
class Answer:
    """What a handler answers. A bytes body is sent with its length; an
    iterable one with `length` if known, else chunked. `done` is called
    with whether the body went out whole; `unread` if the client resets the
    connection before its next request, having left this answer unread."""

    status: int
    headers: Headers
    body: bytes | Iterable[bytes] = b""
    length: int | None = None
    reason: str = ""
    close: bool = False
    done: Callable[[bool], None] | None = None
    unread: Callable[[], None] | None = None


# A handler that has taken the connection over (a WebSocket tunnel) answers
# this; the server then only closes the connection.
TAKEN = Answer(0, [])


def parse_head(head: bytes) -> tuple[list[str], Headers, dict[str, str]]:
    """The start line's parts, the header fields in order, and a lookup by
    lower-case name (repeated fields joined by commas)."""
    text = head.decode("latin-1")
    first, *lines = text.split("\r\n")
    if text.count("\r") + text.count("\n") + text.count("\0") != 2 * len(lines):
        # RFC 9110, section 5.5: such values are dangerous to pass on.
        raise BadMessage("a message head has a lone CR or LF, or a NUL, in a line")
    headers: Headers = []
    fields: dict[str, str] = {}
    for line in lines:
        name, colon, value = line.partition(":")
        if not (colon and _is_token(name)):
            raise BadMessage(f"a header line is malformed: {line[:100]!r}")
        value = value.strip(" \t")
        headers.append((name, value))
        key = name.lower()
        fields[key] = f"{fields[key]}, {value}" if key in fields else value
    return first.split(" "), headers, fields


def _is_token(name: str) -> bool:
    """Whether `name` is an HTTP token; letters, digits and dashes, as
    nearly every header name is, are told without a regular expression."""
    if name.isascii() and name.replace("-", "").isalnum():
        return True
    return TOKEN.fullmatch(name) is not None


def answer_head(reader: Reader) -> tuple[list[str], Headers, dict[str, str]]:
    """The next answer head on `reader`, as `parse_head` gives it."""
    raw = reader.head()
    if raw is None:
        raise ConnectionResetError("the upstream closed the connection unanswered")
    start, headers, fields = parse_head(raw)
    if len(start) < 2 or not start[1].isdigit():
        raise BadMessage(f"not an HTTP answer: {raw[:100]!r}")
    return start, headers, fields


def request_framing(fields: dict[str, str]) -> tuple[int | None, bool]:
    """(Content-Length, chunked) of a request, refusing ambiguous framing,
    which a proxy must never pass on (request smuggling)."""
    coding = fields.get("transfer-encoding")
    length = fields.get("content-length")
    if coding is not None:
        if length is not None:
            raise BadMessage("a request has both Content-Length and Transfer-Encoding")
        if coding.strip().lower() != "chunked":
            raise BadMessage(f"the transfer coding {coding[:50]!r} is not supported")
        return None, True
    if length is None:
        return 0, False
    if not length.strip().isdigit():
        raise BadMessage(f"Content-Length {length[:50]!r} is not a number")
    return int(length), False


def end_to_end(
    headers: Headers, fields: dict[str, str], also: frozenset[str] = frozenset()
) -> Headers:
    """`headers` without those of one hop: hop-by-hop ones, those the
    Connection header names, the body's framing and Host; and without those
    named in `also` (lower-case). `fields` is their lookup by lower-case
    name, as `parse_head` gives it."""
    dropped = fields.keys() & NOT_PASSED
    if also:
        dropped |= fields.keys() & also
    if "connection" in fields:
        dropped |= {n.strip().lower() for n in fields["connection"].split(",")}
    if not dropped:
        return list(headers)
    return [(name, value) for name, value in headers if name.lower() not in dropped]


def status_line(status: int, reason: str = "") -> str:
    return f"HTTP/1.1 {status} {reason or REASONS.get(status, 'Unknown')}\r\n"


def encode_headers(headers: Headers) -> str:
    return "".join([f"{name}: {value}\r\n" for name, value in headers])


def send_all(sock: socket.socket, data: bytes) -> None:
    """`sock.sendall(data)`, for a fraction of the CPU under gevent: the
    system's socket beneath gevent's is written to at once, and gevent's
    sendall, which waits for room, sends only what that did not take."""
    raw = getattr(sock, "_sock", None)  # NOTE: gevent's socket keeps it there
    if raw is None:
        sock.sendall(data)
        return
    try:
        sent = raw.send(data)
    except BlockingIOError:
        sent = 0
    if sent < len(data):
        sock.sendall(memoryview(data)[sent:])
