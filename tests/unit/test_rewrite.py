"""Session-id rewriting between the grid's id and the driver's."""

from __future__ import annotations

import json

import pytest

from app.node import rewrite
from app.node.rewrite import split_path, to_client, to_driver

GRID = "0f5a9d3c-grid"
DRIVER = "e81b44d7driver"


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/session/abc", ("abc", "")),
        ("/session/abc/", ("abc", "/")),
        ("/session/abc/url", ("abc", "/url")),
        ("/session/abc/element/e1/click", ("abc", "/element/e1/click")),
        ("/session/", None),
        ("/session//url", None),
        ("/session", None),
        ("/sessions", None),
        ("/status", None),
        ("/", None),
        ("", None),
        ("/wd/hub/session/abc", None),
    ],
)
def test_split_path(path: str, expected: tuple[str, str] | None) -> None:
    assert split_path(path) == expected


@pytest.mark.parametrize(
    "rest", ["", "/", "/url", "/window", "/element/x/click", "/se/file"]
)
def test_to_driver_swaps_the_grid_id_and_keeps_the_rest(rest: str) -> None:
    path = f"/session/{GRID}{rest}"
    assert to_driver(path, GRID, DRIVER) == f"/session/{DRIVER}{rest}"


@pytest.mark.parametrize(
    "path",
    [
        "/session/another-session/url",
        f"/session/{GRID}abc",
        f"/session/{GRID}abc/url",
        f"/session/{GRID[:-1]}/url",
        f"/session/{DRIVER}/url",
        "/status",
        "/session",
        "/session/",
    ],
)
def test_to_driver_refuses_a_path_not_for_this_session(path: str) -> None:
    assert to_driver(path, GRID, DRIVER) is None


def test_to_client_swaps_the_id_in_a_new_session_answer() -> None:
    answer = {
        "value": {
            "sessionId": DRIVER,
            "capabilities": {
                "browserName": "chrome",
                "webSocketUrl": f"ws://127.0.0.1:9222/session/{DRIVER}",
            },
        }
    }
    out = json.loads(to_client(json.dumps(answer).encode(), DRIVER, GRID))
    assert out["value"]["sessionId"] == GRID
    url = out["value"]["capabilities"]["webSocketUrl"]
    assert url == f"ws://127.0.0.1:9222/session/{GRID}"


def test_to_client_swaps_every_mention() -> None:
    body = f"{DRIVER} and {DRIVER}/se/cdp".encode()
    assert to_client(body, DRIVER, GRID) == f"{GRID} and {GRID}/se/cdp".encode()


def test_to_client_leaves_a_body_without_the_id_alone() -> None:
    body = b'{"value": null}'
    assert to_client(body, DRIVER, GRID) == body


def test_to_client_with_no_driver_id_changes_nothing() -> None:
    body = b'{"value": {"sessionId": "x"}}'
    assert to_client(body, "", GRID) == body


def test_round_trip_path_and_answer() -> None:
    driver_path = to_driver(f"/session/{GRID}/url", GRID, DRIVER)
    assert driver_path is not None
    back = to_client(driver_path.encode(), DRIVER, GRID)
    assert back == f"/session/{GRID}/url".encode()


def test_to_public_points_websocket_urls_at_the_grid() -> None:
    caps = {
        "webSocketUrl": "ws://10.0.0.5:41234/session/g1/se/bidi",
        "se:cdp": "ws://10.0.0.5:41234/session/g1/se/cdp",
        "browserName": "chrome",
    }
    body = json.dumps({"value": {"sessionId": "g1", "capabilities": caps}})
    out = json.loads(rewrite.to_public(body.encode(), "wss://grid.example:443"))
    public = out["value"]["capabilities"]
    assert public["webSocketUrl"] == "wss://grid.example:443/session/g1/se/bidi"
    assert public["se:cdp"] == "wss://grid.example:443/session/g1/se/cdp"
    assert public["browserName"] == "chrome"


@pytest.mark.parametrize(
    "body",
    [b"not json", b'{"value": null}', b'{"value": {"capabilities": {}}}'],
)
def test_to_public_leaves_other_answers_alone(body: bytes) -> None:
    assert rewrite.to_public(body, "ws://grid:4444") == body


# -- to_client_stream ------------------------------------------------------------


def pieces(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


@pytest.mark.parametrize("size", [1, 2, 5, 31, 32, 33, 64, 1000])
def test_streamed_answers_are_rewritten_across_chunk_boundaries(size: int) -> None:
    driver_id, grid_id = "d" * 32, "g" * 36
    body = f'{{"value": "{driver_id}", "other": "x{driver_id}{driver_id}y"}}'.encode()
    out = b"".join(rewrite.to_client_stream(pieces(body, size), driver_id, grid_id))
    assert out == rewrite.to_client(body, driver_id, grid_id)
    assert driver_id.encode() not in out


def test_a_streamed_answer_without_mentions_is_unchanged() -> None:
    body = b"abcdefghij" * 1000
    chunks = rewrite.to_client_stream(pieces(body, 7), "0123456789abcdef", "grid")
    assert b"".join(chunks) == body


def test_a_partial_mention_at_the_end_is_kept() -> None:
    body = b"tail: 01234"
    out = rewrite.to_client_stream(pieces(body, 3), "0123456789", "grid")
    assert b"".join(out) == body
