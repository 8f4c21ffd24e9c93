"""WSGI helpers: the headers forwarded upstream and the request body."""

from __future__ import annotations

import io
from typing import Any

import pytest

from app.errors import InvalidArgument
from app.http import read_body, request_headers


def environ(body: bytes = b"", /, **variables: str) -> dict[str, Any]:
    """A WSGI environ as a server hands it over, with `body` as the input."""
    return {"REQUEST_METHOD": "POST", "wsgi.input": io.BytesIO(body), **variables}


# -- request_headers -------------------------------------------------------------


@pytest.mark.parametrize(
    "variable",
    [
        "HTTP_CONNECTION",
        "HTTP_KEEP_ALIVE",
        "HTTP_TRANSFER_ENCODING",
        "HTTP_UPGRADE",
        "HTTP_TE",
        "HTTP_TRAILER",
        "HTTP_PROXY_CONNECTION",
        "HTTP_PROXY_AUTHORIZATION",
    ],
)
def test_hop_by_hop_headers_are_dropped(variable: str) -> None:
    headers = request_headers(environ(**{variable: "x"}), "node:5555")
    assert headers == {"Host": "node:5555"}


def test_host_is_the_upstream_s() -> None:
    headers = request_headers(environ(HTTP_HOST="grid:4444"), "127.0.0.1:9515")
    assert headers == {"Host": "127.0.0.1:9515"}


def test_end_to_end_headers_are_kept_with_http_names() -> None:
    headers = request_headers(
        environ(
            CONTENT_TYPE="application/json; charset=utf-8",
            HTTP_ACCEPT="application/json",
            HTTP_USER_AGENT="selenium/4.30 (python linux)",
            HTTP_X_REQUEST_ID="r-1",
            HTTP_CONNECTION="keep-alive",
        ),
        "node:5555",
    )
    assert headers == {
        "Host": "node:5555",
        "Content-Type": "application/json; charset=utf-8",
        "Accept": "application/json",
        "User-Agent": "selenium/4.30 (python linux)",
        "X-Request-Id": "r-1",
    }


def test_non_header_variables_are_not_forwarded() -> None:
    headers = request_headers(
        environ(PATH_INFO="/session", SERVER_NAME="grid", CONTENT_TYPE=""), "n:1"
    )
    assert headers == {"Host": "n:1"}


def test_headers_named_in_connection_are_dropped() -> None:
    headers = request_headers(
        environ(HTTP_CONNECTION="keep-alive, X-Hop", HTTP_X_HOP="1"), "n:1"
    )
    assert "X-Hop" not in headers


# -- read_body -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("length", "expected"),
    [("5", b"hello"), ("11", b"hello world"), ("0", b""), ("", b"")],
)
def test_body_of_content_length(length: str, expected: bytes) -> None:
    request = environ(b"hello world", CONTENT_LENGTH=length)
    assert read_body(request, limit=100) == expected


def test_body_without_length_or_chunks_is_empty() -> None:
    assert read_body(environ(b"ignored"), limit=100) == b""


def test_body_at_the_limit_is_read() -> None:
    assert read_body(environ(b"x" * 10, CONTENT_LENGTH="10"), limit=10) == b"x" * 10


@pytest.mark.parametrize(
    "variables",
    [{"CONTENT_LENGTH": "11"}, {"HTTP_TRANSFER_ENCODING": "chunked"}],
)
def test_body_over_the_limit_is_an_invalid_argument(variables: dict[str, str]) -> None:
    with pytest.raises(InvalidArgument) as caught:
        read_body(environ(b"x" * 11, **variables), limit=10)
    assert caught.value.status == 400
    assert "10 bytes" in caught.value.message


def test_content_length_over_the_limit_is_refused_before_reading() -> None:
    stream = io.BytesIO(b"x" * 50)
    request = {"wsgi.input": stream, "CONTENT_LENGTH": "50"}
    with pytest.raises(InvalidArgument):
        read_body(request, limit=10)
    assert stream.tell() == 0


@pytest.mark.parametrize("encoding", ["chunked", "Chunked", "gzip, chunked"])
def test_chunked_body_is_read_to_its_end(encoding: str) -> None:
    request = environ(b"x" * 10, HTTP_TRANSFER_ENCODING=encoding)
    assert read_body(request, limit=10) == b"x" * 10


def test_chunked_empty_body() -> None:
    assert read_body(environ(HTTP_TRANSFER_ENCODING="chunked"), limit=10) == b""
