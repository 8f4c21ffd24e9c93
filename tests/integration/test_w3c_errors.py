"""Bad input through the proxy gets the W3C error code and status."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests

from tests.harness import Grid

JSON_UTF8 = "application/json; charset=utf-8"
ANY_CHROME = {"capabilities": {"alwaysMatch": {"browserName": "chrome"}}}


def post(
    grid: Grid, path: str, body: bytes, content_type: str = JSON_UTF8
) -> requests.Response:
    return requests.post(
        grid.url + path, data=body, headers={"Content-Type": content_type}, timeout=60
    )


def assert_w3c_error(answer: requests.Response, status: int, code: str) -> str:
    """Check the W3C error shape; return the message."""
    assert answer.status_code == status, answer.text
    assert answer.headers["Content-Type"].startswith("application/json")
    value = answer.json()["value"]
    assert value["error"] == code
    assert isinstance(value["stacktrace"], str)
    assert value["message"]
    return str(value["message"])


def new_session(grid: Grid, body: Any) -> requests.Response:
    return post(grid, "/session", json.dumps(body).encode())


@pytest.mark.parametrize(
    "raw",
    [b"{not json", b"", b"[1, 2]", b'"caps"', b"null"],
    ids=["broken", "empty", "array", "string", "null"],
)
def test_malformed_body_is_invalid_argument(grid: Grid, raw: bytes) -> None:
    assert_w3c_error(post(grid, "/session", raw), 400, "invalid argument")


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"capabilities": []},
        {"capabilities": {"alwaysMatch": []}},
        {"capabilities": {"firstMatch": []}},
        {"capabilities": {"firstMatch": {}}},
        {"capabilities": {"firstMatch": [[]]}},
        {"capabilities": {"alwaysMatch": {"browserName": 7}}},
        {"capabilities": {"alwaysMatch": {"acceptInsecureCerts": "yes"}}},
        {"capabilities": {"alwaysMatch": {"pageLoadStrategy": "fast"}}},
        {"capabilities": {"alwaysMatch": {"noColonExtension": 1}}},
    ],
    ids=[
        "no-capabilities",
        "capabilities-not-object",
        "alwaysMatch-not-object",
        "firstMatch-empty",
        "firstMatch-not-list",
        "firstMatch-entry-not-object",
        "browserName-not-string",
        "acceptInsecureCerts-not-bool",
        "pageLoadStrategy-unknown",
        "unknown-key-without-colon",
    ],
)
def test_invalid_capabilities_are_invalid_argument(grid: Grid, body: Any) -> None:
    assert_w3c_error(new_session(grid, body), 400, "invalid argument")


def test_key_in_both_always_and_first_match(grid: Grid) -> None:
    body = {
        "capabilities": {
            "alwaysMatch": {"browserName": "chrome"},
            "firstMatch": [{"browserName": "chrome"}],
        }
    }
    message = assert_w3c_error(new_session(grid, body), 400, "invalid argument")
    assert "browserName" in message


def test_nothing_offers_it_fails_at_once_naming_ask_and_offer(grid: Grid) -> None:
    body = {"capabilities": {"alwaysMatch": {"browserName": "safari"}}}
    answer = new_session(grid, body)
    message = assert_w3c_error(answer, 500, "session not created")
    assert "safari" in message
    assert "offered: chrome" in message
    assert answer.elapsed.total_seconds() < 5


@pytest.mark.parametrize(
    "caps",
    [{"browserVersion": "1"}, {"platformName": "windows"}],
    ids=["version", "platform"],
)
def test_unserved_version_or_platform(grid: Grid, caps: dict[str, str]) -> None:
    body = {"capabilities": {"alwaysMatch": {"browserName": "chrome", **caps}}}
    message = assert_w3c_error(new_session(grid, body), 500, "session not created")
    assert next(iter(caps.values())) in message


def test_unknown_session_is_invalid_session_id(grid: Grid) -> None:
    answer = requests.get(
        grid.url + "/session/0b7a3f4e-1111-4222-8333-944455556666/title", timeout=10
    )
    assert_w3c_error(answer, 404, "invalid session id")


@pytest.mark.parametrize("path", ["/session/a.b/url", "/session/a~b/url"])
def test_malformed_session_id_is_invalid_session_id(grid: Grid, path: str) -> None:
    answer = requests.get(grid.url + path, timeout=10)
    assert_w3c_error(answer, 404, "invalid session id")


@pytest.mark.parametrize("path", ["/nothing", "/wd/hub/nothing", "/sessions/x"])
def test_unknown_path_is_unknown_command(grid: Grid, path: str) -> None:
    assert_w3c_error(requests.get(grid.url + path, timeout=10), 404, "unknown command")


@pytest.mark.parametrize("method", ["GET", "DELETE", "PUT"])
def test_wrong_method_on_session_is_unknown_method(grid: Grid, method: str) -> None:
    answer = requests.request(method, grid.url + "/session", timeout=10)
    assert_w3c_error(answer, 405, "unknown method")


def test_plain_application_json_is_accepted(grid: Grid) -> None:
    answer = post(grid, "/session", json.dumps(ANY_CHROME).encode(), "application/json")
    assert answer.status_code == 200, answer.text
    session_id = answer.json()["value"]["sessionId"]
    deleted = requests.delete(f"{grid.url}/session/{session_id}", timeout=30)
    assert deleted.status_code == 200
    assert deleted.json() == {"value": None}


def test_commands_pass_status_and_body_unchanged(grid: Grid) -> None:
    answer = new_session(grid, ANY_CHROME)
    session_id = answer.json()["value"]["sessionId"]
    base = f"{grid.url}/session/{session_id}"
    try:
        missing = requests.post(
            base + "/element",
            json={"using": "css selector", "value": "#nope"},
            timeout=30,
        )
        assert_w3c_error(missing, 404, "no such element")
        bad = requests.post(base + "/url", json={"url": 5}, timeout=30)
        assert_w3c_error(bad, 400, "invalid argument")
    finally:
        requests.delete(base, timeout=30)
