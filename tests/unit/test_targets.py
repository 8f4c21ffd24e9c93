"""The proxy's refusal of request targets that could steer a request."""

from __future__ import annotations

import pytest

from app.errors import InvalidArgument
from app.http.messages import Request
from app.web.proxy import _check_target


def request(target: str, host: str = "grid:4444") -> Request:
    fields = {"host": host} if host else {}
    return Request("GET", target, "HTTP/1.1", [], fields, None, None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "target",
    [
        "/session/abc/title",
        "/session/abc/url?x=%41",
        "/status",
        "/session/abc/element/.hidden",
        "/session/abc/execute/sync",
    ],
)
def test_plain_targets_pass(target: str) -> None:
    _check_target(request(target))
    _check_target(request(target))  # the Host header's verdict is remembered


@pytest.mark.parametrize(
    ("target", "why"),
    [
        ("http://elsewhere/session", "is not a path"),
        ("/session/abc%2Fdef/title", "encoded separator"),
        ("/session/abc%2fdef/title", "encoded separator"),
        ("/session/abc%5C/title", "encoded separator"),
        ("/session/%2E%2E/title", "encoded separator"),
        ("/session/abc\\def", "encoded separator"),
        ("/session/../status", "dot segments"),
        ("/session/abc/./title", "dot segments"),
        ("/session/abc/..", "dot segments"),
    ],
)
def test_steering_targets_are_refused(target: str, why: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        _check_target(request(target))
    assert why in caught.value.message


@pytest.mark.parametrize(
    "host", ["a" * 254, "x" * 100_000, "grid:4444/evil", "grid 4444", "[::1"]
)
def test_hosts_that_name_no_host_are_refused(host: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        _check_target(request("/status", host))
    assert "is not a host" in caught.value.message


@pytest.mark.parametrize("host", ["grid", "127.0.0.1:4444", "[::1]:4444", ""])
def test_hosts_that_name_a_host_pass(host: str) -> None:
    _check_target(request("/status", host))
