"""The bare-socket probes: PING to a Redis, /status of a proxy."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator

import pytest

from app import embedded_redis
from app.probes import answers_ping, proxy_status

READY = b'{"value": {"ready": true, "message": "ready: 4 of 4 slots free"}}'


@contextlib.contextmanager
def serve_once(answer: bytes) -> Iterator[int]:
    """A loopback listener that reads one request, sends `answer`, closes."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def answer_one() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(answer)

    thread = threading.Thread(target=answer_one, daemon=True)
    thread.start()
    try:
        yield port
    finally:
        listener.close()


def test_status_reads_the_value_of_a_200() -> None:
    with serve_once(b"HTTP/1.1 200 OK\r\n\r\n" + READY) as port:
        assert proxy_status(port) == {
            "ready": True,
            "message": "ready: 4 of 4 slots free",
        }


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 503 Service Unavailable\r\n\r\n" + READY,
        b"HTTP/1.1 200 OK\r\n\r\nnot json",
        b'HTTP/1.1 200 OK\r\n\r\n{"no value": 1}',
        b"",
    ],
    ids=["not-200", "not-json", "no-value", "hung-up"],
)
def test_status_is_empty_for_anything_else(answer: bytes) -> None:
    with serve_once(answer) as port:
        assert proxy_status(port) == {}


def test_status_is_empty_when_nothing_listens() -> None:
    assert proxy_status(embedded_redis.free_port()) == {}


def test_ping_wants_a_redis_answer() -> None:
    with serve_once(b"HTTP/1.1 400 Bad Request\r\n\r\n") as port:
        assert answers_ping(port) is False
    assert answers_ping(embedded_redis.free_port()) is False
    with serve_once(b"+PONG\r\n") as port:
        assert answers_ping(port) is True
