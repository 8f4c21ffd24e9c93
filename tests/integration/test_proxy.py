"""The proxy: safe to expose, faithful with large bodies, auth, fallbacks."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
from selenium import webdriver
from selenium.webdriver.remote.client_config import ClientConfig

from tests.harness import Grid, wait_for
from tests.integration.test_failures import start_session
from tests.integration.test_w3c_errors import ANY_CHROME, assert_w3c_error


@pytest.fixture
def session(grid: Grid) -> Iterator[str]:
    session_id = start_session(grid)
    yield session_id
    requests.delete(f"{grid.url}/session/{session_id}", timeout=30)


def raw_request(
    grid: Grid, target: str, host: str = "grid"
) -> tuple[int, dict[str, Any]]:
    """Send one GET with a request target as given; (status, JSON body)."""
    with socket.create_connection(("127.0.0.1", grid.port), timeout=30) as conn:
        request = f"GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close"
        conn.sendall(request.encode() + b"\r\n\r\n")
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


@pytest.mark.parametrize(
    "target",
    [
        "http://169.254.169.254/latest/meta-data",
        "http://127.0.0.1:22/session/x/url",
        "/session/{sid}/..%2F..%2Fstatus",
        "/session/{sid}/%2e%2e/%2e%2e/status",
        "/session/{sid}/../../status",
        "/wd/hub/../session/{sid}/title",
    ],
    ids=[
        "absolute",
        "absolute-to-a-port",
        "encoded-slash",
        "encoded-dots",
        "dots",
        "dots-above-base",
    ],
)
def test_targets_that_could_steer_a_request_are_refused(
    grid: Grid, session: str, target: str
) -> None:
    status, body = raw_request(grid, target.format(sid=session))
    assert status == 400
    assert body["value"]["error"] == "invalid argument"


def test_a_malformed_host_header_is_refused(grid: Grid, session: str) -> None:
    status, body = raw_request(grid, f"/session/{session}/title", "evil.example/x")
    assert status == 400
    assert body["value"]["error"] == "invalid argument"


def test_a_forged_host_does_not_steer_routing(grid: Grid, session: str) -> None:
    status, body = raw_request(grid, f"/session/{session}/title", "10.1.2.3:80")
    assert status == 200
    assert body == {"value": ""}


def test_a_10_mb_answer_passes_whole(grid: Grid) -> None:
    driver = webdriver.Remote(grid.url, options=webdriver.ChromeOptions())
    try:
        text = driver.execute_script("return 'x'.repeat(10 * 1024 * 1024) + 'end';")
        assert len(text) == 10 * 1024 * 1024 + 3 and text.endswith("xend")
    finally:
        driver.quit()


def test_body_limit(make_grid: Callable[..., Grid]) -> None:
    grid = make_grid(WEBGRID_MAX_BODY_MB="1")
    big: dict[str, Any] = {**ANY_CHROME, "padding": "x" * (2 * 1024 * 1024)}
    answer = requests.post(grid.url + "/session", json=big, timeout=60)
    message = assert_w3c_error(answer, 400, "invalid argument")
    assert "WEBGRID_MAX_BODY_MB" in message


def test_basic_auth(make_grid: Callable[..., Grid]) -> None:
    grid = make_grid(WEBGRID_USERNAME="ada", WEBGRID_PASSWORD="s3cret")
    for auth in (None, ("ada", "wrong"), ("eve", "s3cret")):
        answer = requests.post(
            grid.url + "/session", json=ANY_CHROME, auth=auth, timeout=30
        )
        assert_w3c_error(answer, 401, "unknown error")
        assert answer.headers["WWW-Authenticate"].startswith("Basic ")
    assert requests.get(grid.url + "/status", timeout=10).status_code == 200

    config = ClientConfig(grid.url, username="ada", password="s3cret")
    driver = webdriver.Remote(
        grid.url, options=webdriver.ChromeOptions(), client_config=config
    )
    try:
        assert driver.title == ""
        anonymous = requests.get(f"{grid.url}/session/{driver.session_id}/title")
        assert anonymous.status_code == 401
    finally:
        driver.quit()


def test_basic_auth_from_credentials_in_the_url(
    make_grid: Callable[..., Grid],
) -> None:
    grid = make_grid(WEBGRID_USERNAME="ada", WEBGRID_PASSWORD="s3cret")
    url = f"http://ada:s3cret@127.0.0.1:{grid.port}"
    # Selenium warns that credentials in a URL may leak; many clients do it.
    with pytest.warns(UserWarning, match="username and password in URL"):
        driver = webdriver.Remote(url, options=webdriver.ChromeOptions())
        try:
            assert driver.title == ""
        finally:
            driver.quit()


def test_redis_refusing_config_falls_back_to_polling(
    make_grid: Callable[..., Grid],
) -> None:
    grid = make_grid(redis_args=("--rename-command", "CONFIG", ""))
    assert "polls for live nodes" in grid.log("proxy")
    session_id = start_session(grid)
    answer = requests.get(f"{grid.url}/session/{session_id}/title", timeout=30)
    assert answer.json() == {"value": ""}
    requests.delete(f"{grid.url}/session/{session_id}", timeout=30)
    wait_for(lambda: grid.status()["slots"]["used"] == 0, 10, "slot free")
