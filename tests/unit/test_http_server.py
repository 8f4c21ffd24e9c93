"""The grid's HTTP server and client, talking over loopback.

The server runs on a gevent hub of its own, in a thread; the tests speak
raw HTTP to it, or use the grid's `Upstream` client.
"""

from __future__ import annotations

import select
import socket
import threading
from collections.abc import Iterator

import gevent
import pytest

from app.errors import InvalidSessionId
from app.http.client import Upstream
from app.http.messages import Answer, Request
from app.http.server import Server
from app.http.wsgi import client_gone
from tests.harness import wait_for

BIG = b"0123456789" * 200_000
# Tokens of /watched answers whose client reset the connection unread.
UNREAD: list[str] = []


def handler(request: Request) -> Answer:
    """Echoes what it was sent; a few paths answer in other ways."""
    if request.path == "/big":
        return Answer(200, [("Content-Type", "text/plain")], BIG)
    if request.path == "/stream":
        chunks = (BIG[i : i + 65536] for i in range(0, len(BIG), 65536))
        return Answer(200, [], chunks)
    if request.path == "/missing":
        raise InvalidSessionId("no such session")
    if request.path == "/crash":
        raise RuntimeError("boom")
    if request.path == "/unread":
        return Answer(200, [], b"did not read")
    if request.path == "/watched":
        token = request.query
        return Answer(200, [], b"read me", unread=lambda: UNREAD.append(token))
    if request.path == "/until-hung-up":
        while not client_gone(request.sock):
            gevent.sleep(0.01)
        return Answer(200, [], b"saw the hang-up")
    body = request.body.read(10**8)
    echo = f"{request.method} {request.target} {len(body)} ".encode() + body
    names = ",".join(name.lower() for name, _ in request.headers).encode()
    return Answer(200, [("X-Names", names.decode())], echo)


@pytest.fixture(scope="module")
def address() -> Iterator[str]:
    ready = threading.Event()
    found: list[Server] = []

    def serve() -> None:
        server = Server(("127.0.0.1", 0), handler)
        server.start()
        found.append(server)
        ready.set()
        while not stopping.is_set():
            gevent.sleep(0.05)
        server.stop()

    stopping = threading.Event()
    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert ready.wait(10)
    yield f"127.0.0.1:{found[0].server_port}"
    stopping.set()
    thread.join(10)


def exchange(address: str, *requests: bytes) -> bytes:
    """Send raw requests on one connection; everything answered."""
    host, _, port = address.rpartition(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        for request in requests:
            sock.sendall(request)
        sock.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return data


def test_kept_alive_connection_serves_requests_in_turn(address: str) -> None:
    answer = exchange(
        address,
        b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
        b"GET /b?q=1 HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    assert answer.count(b"HTTP/1.1 200 OK") == 2
    assert b"POST /a 3 abc" in answer
    assert b"GET /b?q=1 0 " in answer


def test_chunked_request_is_decoded(address: str) -> None:
    answer = exchange(
        address,
        b"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
    )
    assert b"POST /c 5 abcde" in answer


def test_expect_continue_is_answered_before_the_body_is_read(address: str) -> None:
    host, _, port = address.rpartition(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(
            b"POST /e HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
            b"Expect: 100-continue\r\nConnection: close\r\n\r\n"
        )
        assert sock.recv(100).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        sock.sendall(b"ok")
        rest = sock.recv(1000)
    assert b"POST /e 2 ok" in rest


def test_connection_close_is_honoured(address: str) -> None:
    answer = exchange(
        address,
        b"GET /1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        b"GET /2 HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    assert answer.count(b"HTTP/1.1 200") == 1
    assert b"Connection: close" in answer


def test_http_1_0_gets_one_answer_and_a_close(address: str) -> None:
    answer = exchange(address, b"GET /old HTTP/1.0\r\n\r\n", b"GET /2 HTTP/1.0\r\n\r\n")
    assert answer.count(b"HTTP/1.1 200") == 1


def test_http_1_0_gets_a_stream_without_chunks(address: str) -> None:
    answer = exchange(address, b"GET /stream HTTP/1.0\r\n\r\n")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b"chunked" not in head.lower()
    assert body == BIG


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GARBAGE\r\n\r\n",
        b"GET / HTTP/2.0\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"GET / HTTP/1.1\r\nBad Header\r\n\r\n",
    ],
)
def test_malformed_requests_get_a_w3c_400_and_a_close(
    address: str, request_bytes: bytes
) -> None:
    answer = exchange(address, request_bytes, b"GET /next HTTP/1.1\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert b'"error": "invalid argument"' in answer
    assert b"Connection: close" in answer
    assert b"GET /next" not in answer


def test_errors_become_w3c_answers(address: str) -> None:
    missing = exchange(address, b"GET /missing HTTP/1.1\r\n\r\n")
    assert missing.startswith(b"HTTP/1.1 404")
    assert b'"invalid session id"' in missing
    crash = exchange(address, b"GET /crash HTTP/1.1\r\n\r\n")
    assert crash.startswith(b"HTTP/1.1 500")
    assert b'"unknown error"' in crash and b"boom" in crash


def test_an_unread_small_body_is_skipped_to_keep_the_connection(address: str) -> None:
    answer = exchange(
        address,
        b"POST /unread HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello",
        b"GET /after HTTP/1.1\r\n\r\n",
    )
    assert b"GET /after 0" in answer


def test_client_reuses_its_connection_and_reads_large_bodies(address: str) -> None:
    upstream = Upstream(address, timeout=10)
    try:
        status, body = upstream.request("POST", "/x", [("X-A", "1")], b"payload")
        assert (status, body) == (200, b"POST /x 7 payload")
        first = upstream._idle[-1]
        assert upstream.request("GET", "/big") == (200, BIG)
        assert upstream._idle[-1] is first
        reply = upstream.send("GET", "/stream", [])
        assert reply.length is None
        assert b"".join(reply) == BIG
        assert upstream._idle[-1] is first
    finally:
        upstream.close()


def test_client_hanging_up_still_reads_the_answer(address: str) -> None:
    upstream = Upstream(address, timeout=10)
    answers: list[tuple[int, bytes]] = []
    asking = threading.Thread(
        target=lambda: answers.append(upstream.request("GET", "/until-hung-up"))
    )
    asking.start()
    try:
        for _ in range(500):
            if upstream._busy:
                break
            threading.Event().wait(0.01)
        upstream.hang_up()
        asking.join(10)
        assert answers == [(200, b"saw the hang-up")]
        # A connection hung up on carries no further request.
        assert not upstream._busy and not upstream._idle
    finally:
        upstream.close()


def test_client_sends_host_and_framing_itself(address: str) -> None:
    upstream = Upstream(address, timeout=10)
    try:
        reply = upstream.send("POST", "/h", [("Accept", "*/*")], b"ab")
        names = dict(reply.headers)["X-Names"].split(",")
        assert names == ["host", "accept", "content-length"]
        reply.read()
    finally:
        upstream.close()


def test_client_replaces_a_connection_the_server_closed(address: str) -> None:
    upstream = Upstream(address, timeout=10)
    try:
        upstream.request("GET", "/1", [("Connection", "close")])
        assert upstream._idle == []
        upstream.request("GET", "/2")
        idle = upstream._idle[-1]
        idle.sock.shutdown(socket.SHUT_RDWR)
        assert upstream.request("GET", "/3")[0] == 200
    finally:
        upstream.close()


def _answered(sock: socket.socket) -> None:
    """Wait until an answer has come to `sock`, without reading it."""
    readable, _, _ = select.select([sock], [], [], 10)
    assert readable, "no answer came"


def test_a_client_resetting_on_an_unread_answer_is_noticed(address: str) -> None:
    host, _, port = address.rpartition(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"GET /watched?left HTTP/1.1\r\nHost: x\r\n\r\n")
        _answered(sock)
    # Closed with the answer unread: the kernel resets the connection.
    wait_for(lambda: "left" in UNREAD, 10, "the unread answer noticed")


def test_an_answer_followed_by_another_request_was_read(address: str) -> None:
    host, _, port = address.rpartition(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"GET /watched?first HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(1000).endswith(b"read me")
        sock.sendall(b"GET /watched?second HTTP/1.1\r\nHost: x\r\n\r\n")
        _answered(sock)
    wait_for(lambda: "second" in UNREAD, 10, "the second answer noticed")
    assert "first" not in UNREAD
