"""HTTP messages: heads, framing, hop-by-hop headers and streaming bodies."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from typing import Any

import gevent
import gevent.socket
import pytest

from app.errors import InvalidArgument
from app.http.messages import (
    BadMessage,
    Body,
    Reader,
    end_to_end,
    parse_head,
    request_framing,
    send_all,
)


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    """Two connected sockets: what is sent on the first, the second reads."""
    left, right = socket.socketpair()
    right.settimeout(5)
    yield left, right
    left.close()
    right.close()


def body_of(
    pair: tuple[socket.socket, socket.socket],
    wire: bytes,
    length: int | None,
    *,
    chunked: bool = False,
) -> Body:
    sender, receiver = pair

    def send() -> None:
        # A test that stops reading early closes the pair under the sender.
        with contextlib.suppress(OSError):
            sender.sendall(wire)
            sender.shutdown(socket.SHUT_WR)

    # NOTE: in a thread, as a large body fills the socket's buffer.
    threading.Thread(target=send, daemon=True).start()
    return Body(Reader(receiver), length, chunked=chunked)


# -- heads ---------------------------------------------------------------------


def test_a_head_is_split_into_start_line_and_fields() -> None:
    head = b"GET /status HTTP/1.1\r\nHost: grid:4444\r\nX-Twice: a\r\nx-twice:  b "
    start, headers, fields = parse_head(head)
    assert start == ["GET", "/status", "HTTP/1.1"]
    assert headers == [("Host", "grid:4444"), ("X-Twice", "a"), ("x-twice", "b")]
    assert fields == {"host": "grid:4444", "x-twice": "a, b"}


@pytest.mark.parametrize(
    "line",
    [b"No colon here", b"Bad Name: x", b" folded: x", b": no name", b"Na\x01me: x"],
)
def test_malformed_header_lines_are_refused(line: bytes) -> None:
    with pytest.raises(BadMessage) as caught:
        parse_head(b"GET / HTTP/1.1\r\n" + line)
    assert caught.value.status == 400


def test_header_values_lose_only_the_blanks_around_them() -> None:
    _, headers, fields = parse_head(b"GET / HTTP/1.1\r\nA:\t x  y \t\r\nB:\r\nC:  ")
    assert headers == [("A", "x  y"), ("B", ""), ("C", "")]
    assert fields == {"a": "x  y", "b": "", "c": ""}


@pytest.mark.parametrize("value", [b"a\rb", b"a\nb", b"a\0b"])
def test_a_lone_cr_or_lf_or_a_nul_in_a_value_is_refused(value: bytes) -> None:
    with pytest.raises(BadMessage):
        parse_head(b"GET / HTTP/1.1\r\nA: " + value)


def test_the_malformed_line_among_good_ones_is_named() -> None:
    with pytest.raises(BadMessage) as caught:
        parse_head(b"GET / HTTP/1.1\r\nA: 1\r\nNo colon\r\nB: 2")
    assert "'No colon'" in caught.value.message


@pytest.mark.parametrize("green", [False, True], ids=["plain", "gevent"])
def test_send_all_sends_what_the_socket_buffer_cannot_hold_at_once(
    green: bool,
) -> None:
    module: Any = gevent.socket if green else socket
    sender, receiver = module.socketpair()
    data = bytes(range(256)) * 40_000  # 10 MB, far more than a socket buffer
    got: list[bytes] = []

    def receive() -> None:
        while chunk := receiver.recv(1 << 20):
            got.append(chunk)

    reading = gevent.spawn(receive) if green else threading.Thread(target=receive)
    if not green:
        reading.start()
    send_all(sender, data)
    sender.shutdown(socket.SHUT_WR)
    reading.join(10)
    sender.close()
    receiver.close()
    assert b"".join(got) == data


def test_reader_finds_heads_split_over_many_packets(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    sender, receiver = pair
    reader = Reader(receiver)
    for piece in (
        b"GET / HTTP/1.1\r",
        b"\nHost: a\r\n\r",
        b"\nGET /2 HTTP/1.1\r\n\r\n",
    ):
        sender.sendall(piece)
    assert reader.head() == b"GET / HTTP/1.1\r\nHost: a"
    assert reader.head() == b"GET /2 HTTP/1.1"
    sender.close()
    assert reader.head() is None


def test_a_head_cut_by_the_close_is_refused(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    sender, receiver = pair
    sender.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n")
    sender.close()
    with pytest.raises(BadMessage):
        Reader(receiver).head()


def test_an_endless_head_is_refused(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    sender, receiver = pair
    sender.sendall(b"GET / HTTP/1.1\r\n" + b"X: " + b"y" * 70_000)
    with pytest.raises(BadMessage):
        Reader(receiver).head()


# -- framing -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({}, (0, False)),
        ({"content-length": "12"}, (12, False)),
        ({"transfer-encoding": "chunked"}, (None, True)),
        ({"transfer-encoding": "Chunked "}, (None, True)),
    ],
)
def test_request_framing(
    fields: dict[str, str], expected: tuple[int | None, bool]
) -> None:
    assert request_framing(fields) == expected


@pytest.mark.parametrize(
    "fields",
    [
        # Both at once is how requests are smuggled past a proxy.
        {"content-length": "3", "transfer-encoding": "chunked"},
        {"content-length": "3, 4"},
        {"content-length": "-1"},
        {"transfer-encoding": "gzip, chunked"},
    ],
)
def test_ambiguous_framing_is_refused(fields: dict[str, str]) -> None:
    with pytest.raises(BadMessage):
        request_framing(fields)


# -- hop-by-hop headers ----------------------------------------------------------


def lookup(headers: list[tuple[str, str]]) -> dict[str, str]:
    """The fields of `headers` by lower-case name, as `parse_head` gives them."""
    return {name.lower(): value for name, value in headers}


@pytest.mark.parametrize(
    "name",
    [
        "Connection",
        "Keep-Alive",
        "Transfer-Encoding",
        "Upgrade",
        "TE",
        "Trailer",
        "Proxy-Connection",
        "Proxy-Authorization",
        "Content-Length",
        "Expect",
        "Host",
    ],
)
def test_headers_of_one_hop_are_dropped(name: str) -> None:
    headers = [(name, "x"), ("Accept", "application/json")]
    assert end_to_end(headers, lookup(headers)) == [("Accept", "application/json")]


def test_headers_named_in_connection_are_dropped() -> None:
    headers = [("Connection", "keep-alive, X-Hop"), ("X-Hop", "1"), ("X-End", "2")]
    fields = {"connection": "keep-alive, X-Hop"}
    assert end_to_end(headers, fields) == [("X-End", "2")]


def test_end_to_end_headers_keep_their_order_and_names() -> None:
    headers = [
        ("User-Agent", "selenium/4.30 (python linux)"),
        ("Content-Type", "application/json; charset=utf-8"),
        ("X-Request-Id", "r-1"),
    ]
    assert end_to_end(headers, lookup(headers)) == headers


# -- bodies --------------------------------------------------------------------


def test_a_body_of_content_length_leaves_the_next_message(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    body = body_of(pair, b"hello worldGET /next", 11)
    assert body.read(100) == b"hello world"
    assert body.done
    assert body.reader.rest() + pair[1].recv(100) == b"GET /next"


def test_a_chunked_body_is_decoded_and_its_trailers_dropped(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    wire = b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\nNEXT"
    body = body_of(pair, wire, None, chunked=True)
    assert body.read(100) == b"hello world"
    assert body.reader.rest() + pair[1].recv(100) == b"NEXT"


def test_an_empty_chunked_body(pair: tuple[socket.socket, socket.socket]) -> None:
    body = body_of(pair, b"0\r\n\r\n", None, chunked=True)
    assert body.read(10) == b""
    assert body.done


def test_a_bad_chunk_size_is_refused(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    body = body_of(pair, b"zz\r\nhello\r\n", None, chunked=True)
    with pytest.raises(BadMessage):
        body.read(100)


def test_an_answer_without_length_ends_with_the_connection(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    assert body_of(pair, b"x" * 300_000, None).read(10**6) == b"x" * 300_000


def test_a_body_cut_short_is_an_error(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    body = body_of(pair, b"short", 10)
    with pytest.raises(ConnectionResetError):
        body.read(100)


@pytest.mark.parametrize(
    ("wire", "length", "chunked"),
    [(b"x" * 11, 11, False), (b"6\r\nxxxxxx\r\n5\r\nxxxxx\r\n0\r\n\r\n", None, True)],
)
def test_a_body_over_the_limit_is_an_invalid_argument(
    pair: tuple[socket.socket, socket.socket],
    wire: bytes,
    length: int | None,
    chunked: bool,
) -> None:
    body = body_of(pair, wire, length, chunked=chunked)
    with pytest.raises(InvalidArgument) as caught:
        body.read(10)
    assert caught.value.status == 400
    assert "10 bytes" in caught.value.message


def test_a_length_over_the_limit_is_refused_before_reading(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    body = body_of(pair, b"x" * 50, 50)
    with pytest.raises(InvalidArgument):
        body.read(10)
    assert body.reader.buffer == b""
    assert body.left == 50


def test_skip_reads_a_small_rest_and_refuses_a_large_one(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    assert body_of(pair, b"x" * 100, 100).skip(1000)
    sender, receiver = socket.socketpair()
    with sender, receiver:
        sender.sendall(b"x" * 5000)
        assert not Body(Reader(receiver), 5000).skip(1000)


def test_a_body_the_client_waits_to_send_is_not_skipped(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    asked = []
    body = Body(Reader(pair[1]), 10, before_read=lambda: asked.append(True))
    assert not body.skip(1000)
    assert asked == []
