"""BiDi and Chrome DevTools WebSockets, tunnelled through the grid."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import websocket
from selenium import webdriver
from selenium.webdriver.remote.webdriver import WebDriver

from tests.harness import Grid, wait_for


@pytest.fixture
def bidi_driver(grid: Grid) -> Iterator[WebDriver]:
    options = webdriver.ChromeOptions()
    options.enable_bidi = True
    driver = webdriver.Remote(grid.url, options=options)
    yield driver
    driver.quit()


def test_websocket_urls_point_at_the_grid(bidi_driver: WebDriver, grid: Grid) -> None:
    session_id = bidi_driver.session_id
    caps = bidi_driver.capabilities
    grid_ws = f"ws://127.0.0.1:{grid.port}/session/{session_id}"
    assert caps["webSocketUrl"] == grid_ws + "/se/bidi"
    assert caps["se:cdp"] == grid_ws + "/se/cdp"


def test_bidi_console_messages_reach_the_client(
    bidi_driver: WebDriver, pages: str
) -> None:
    messages: list[Any] = []
    bidi_driver.script.add_console_message_handler(messages.append)
    bidi_driver.get(pages + "/console.html")
    wait_for(lambda: messages, 15, "a console message over BiDi")
    assert messages[0].text == "hello from the page"


def test_firefox_bidi_through_the_grid_two_at_once(make_grid: Any, pages: str) -> None:
    grid = make_grid(WEBGRID_BROWSERS="firefox", WEBGRID_SLOTS="2")
    drivers = []
    try:
        for _ in range(2):
            options = webdriver.FirefoxOptions()
            options.enable_bidi = True
            drivers.append(webdriver.Remote(grid.url, options=options))
        for driver in drivers:
            url = driver.capabilities["webSocketUrl"]
            assert url.startswith(f"ws://127.0.0.1:{grid.port}/session/")
            messages: list[Any] = []
            driver.script.add_console_message_handler(messages.append)
            driver.get(pages + "/console.html")
            wait_for(messages.copy, 20, "a console message over Firefox BiDi")
            assert messages[0].text == "hello from the page"
    finally:
        for driver in drivers:
            driver.quit()


def test_cdp_command_over_the_grid(bidi_driver: WebDriver) -> None:
    conn = websocket.create_connection(bidi_driver.capabilities["se:cdp"], timeout=15)
    try:
        conn.send(json.dumps({"id": 1, "method": "Browser.getVersion"}))
        answer = json.loads(conn.recv())
    finally:
        conn.close()
    assert answer["id"] == 1
    assert answer["result"]["product"].startswith(("Chrome/", "HeadlessChrome/"))


def test_public_url_setting_is_used(make_grid: Any) -> None:
    grid = make_grid(WEBGRID_PUBLIC_URL="https://grid.example:8443")
    body = {"capabilities": {"alwaysMatch": {"webSocketUrl": True}}}
    answer = requests.post(grid.url + "/session", json=body, timeout=60)
    value = answer.json()["value"]
    requests.delete(f"{grid.url}/session/{value['sessionId']}", timeout=30)
    expected = f"wss://grid.example:8443/session/{value['sessionId']}/se/bidi"
    assert value["capabilities"]["webSocketUrl"] == expected


def test_websocket_to_an_unknown_session_is_refused(grid: Grid) -> None:
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        websocket.create_connection(
            f"ws://127.0.0.1:{grid.port}/session/nope/se/bidi", timeout=10
        )
    assert refused.value.status_code == 404
