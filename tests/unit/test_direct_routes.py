"""Which commands the proxy may send straight to a driver, and with what."""

from __future__ import annotations

import pytest

from app.node.agent import is_loopback
from app.web.proxy import forwarded_headers, goes_direct


@pytest.mark.parametrize(
    ("method", "rest"),
    [
        ("GET", "/title"),
        ("POST", "/url"),
        ("POST", "/element"),
        ("GET", "/screenshot"),
        ("POST", "/window"),
        ("GET", "/window"),
        ("DELETE", "/cookie"),
        ("DELETE", "/window/handles"),
    ],
)
def test_plain_commands_go_direct(method: str, rest: str) -> None:
    assert goes_direct(method, rest)


@pytest.mark.parametrize(
    ("method", "rest"),
    [
        # They end the session, which the node must see.
        ("DELETE", ""),
        ("DELETE", "/"),
        ("DELETE", "/window"),
        ("DELETE", "/window/"),
        # The grid's own commands, which the node answers.
        ("POST", "/se/file"),
        ("GET", "/se/files"),
        ("GET", "/se/bidi"),
        ("GET", "/se/cdp"),
        ("GET", ""),
    ],
)
def test_commands_for_the_node(method: str, rest: str) -> None:
    assert not goes_direct(method, rest)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.0.1.1", True),
        ("::1", True),
        ("localhost", True),
        ("10.0.0.7", False),
        ("0.0.0.0", False),
        ("grid.example", False),
    ],
)
def test_drivers_are_offered_only_on_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_the_grid_s_credentials_are_not_sent_on() -> None:
    headers = [
        ("Authorization", "Basic YWRhOnMzY3JldA=="),
        ("Connection", "keep-alive"),
        ("Accept", "application/json"),
    ]
    fields = {"authorization": "Basic YWRhOnMzY3JldA==", "connection": "keep-alive"}
    kept = forwarded_headers(headers, {**fields, "accept": "application/json"})
    assert kept == [("Accept", "application/json")]
