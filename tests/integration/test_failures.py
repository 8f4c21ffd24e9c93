"""Every failure path of the walking grid, caused for real.

Each ends in a clear W3C error or a recorded reason, and leaves no browser,
driver, node process or busy slot behind.
"""

from __future__ import annotations

import glob
import os
import pathlib
import signal
import tempfile
import time
from collections.abc import Callable
from typing import Any

import pytest
import requests
from selenium import webdriver
from selenium.common.exceptions import InvalidSessionIdException

from tests.harness import Grid, wait_for
from tests.integration.test_w3c_errors import ANY_CHROME, assert_w3c_error, new_session

SILENT_DRIVER = pathlib.Path(__file__).parents[1] / "fixtures" / "silent-driver"


def start_session(grid: Grid, body: Any = ANY_CHROME) -> str:
    answer = new_session(grid, body)
    assert answer.status_code == 200, answer.text
    return str(answer.json()["value"]["sessionId"])


def refused(grid: Grid, body: Any = ANY_CHROME) -> str:
    """The message of the `session not created` error `body` gets."""
    return assert_w3c_error(new_session(grid, body), 500, "session not created")


def assert_cleaned(grid: Grid, session_id: str) -> None:
    grid.wait_slots_free()
    # A killed process may take a moment to vanish on a loaded machine.
    wait_for(lambda: not grid.session_processes(session_id), 5, "no process left")
    assert grid.record(session_id)["state"] == "terminated"


def test_missing_driver_binary(make_grid: Callable[..., Grid]) -> None:
    grid = make_grid(WEBGRID_CHROMEDRIVER="/nowhere/chromedriver")
    message = assert_w3c_error(
        new_session(grid, ANY_CHROME), 500, "session not created"
    )
    assert "/nowhere/chromedriver" in message
    assert "WEBGRID_CHROMEDRIVER" in message
    grid.wait_slots_free()
    assert grid.processes() == []


def test_driver_refusing_the_session_gives_its_reason(grid: Grid) -> None:
    body = {
        "capabilities": {
            "alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": {"binary": "/nowhere/chromium"},
            }
        }
    }
    message = refused(grid, body)
    assert "/nowhere/chromium" in message
    grid.wait_slots_free()
    assert grid.processes() == []


def test_startup_timeout_kills_a_silent_driver(make_grid: Callable[..., Grid]) -> None:
    grid = make_grid(
        WEBGRID_CHROMEDRIVER=str(SILENT_DRIVER), WEBGRID_STARTUP_TIMEOUT="2"
    )
    started = time.monotonic()
    message = assert_w3c_error(
        new_session(grid, ANY_CHROME), 500, "session not created"
    )
    assert "did not answer within 2 s" in message
    assert time.monotonic() - started < 15
    grid.wait_slots_free()
    assert grid.processes() == []


def test_queue_timeout_says_how_long_it_waited(make_grid: Callable[..., Grid]) -> None:
    grid = make_grid(WEBGRID_SLOTS="1", WEBGRID_QUEUE_TIMEOUT="2")
    holder = start_session(grid)
    try:
        message = refused(grid)
        assert "waited" in message and "free slot" in message
    finally:
        requests.delete(f"{grid.url}/session/{holder}", timeout=30)
    grid.wait_slots_free()
    # The withdrawn request must not start later: the next one gets the slot.
    follower = start_session(grid)
    requests.delete(f"{grid.url}/session/{follower}", timeout=30)
    assert_cleaned(grid, follower)


def test_idle_timeout_ends_the_session(make_grid: Callable[..., Grid]) -> None:
    grid = make_grid(WEBGRID_IDLE_TIMEOUT="2")
    driver = webdriver.Remote(grid.url, options=webdriver.ChromeOptions())
    session_id = driver.session_id or ""
    assert driver.title == ""
    wait_for(lambda: grid.record(session_id)["state"] == "terminated", 10, "idle end")
    assert grid.record(session_id)["reason"] == "idle for more than 2 s"
    with pytest.raises(InvalidSessionIdException):
        driver.title  # noqa: B018 (a command is the point)
    assert_cleaned(grid, session_id)


def test_first_command_timeout_ends_an_abandoned_session(
    make_grid: Callable[..., Grid],
) -> None:
    grid = make_grid(WEBGRID_FIRST_COMMAND_TIMEOUT="2")
    session_id = start_session(grid)
    wait_for(lambda: grid.record(session_id)["state"] == "terminated", 10, "end")
    assert grid.record(session_id)["reason"] == "no command within 2 s of its start"
    assert_cleaned(grid, session_id)


def test_closing_the_last_window_ends_the_session(grid: Grid) -> None:
    session_id = start_session(grid)
    answer = requests.delete(f"{grid.url}/session/{session_id}/window", timeout=30)
    assert answer.status_code == 200
    assert answer.json() == {"value": []}
    assert_cleaned(grid, session_id)
    assert grid.record(session_id)["reason"] == "the last window was closed"
    gone = requests.get(f"{grid.url}/session/{session_id}/title", timeout=10)
    assert_w3c_error(gone, 404, "invalid session id")


def test_killed_node_is_reported_and_cleaned(grid: Grid) -> None:
    session_id = start_session(grid)
    grid.kill_node(session_id)
    assert_cleaned(grid, session_id)
    assert "exited with code -9" in grid.record(session_id)["reason"]
    gone = requests.get(f"{grid.url}/session/{session_id}/title", timeout=10)
    assert_w3c_error(gone, 404, "invalid session id")


def test_killed_worker_takes_its_browsers_along(
    make_grid: Callable[..., Grid],
) -> None:
    grid = make_grid()
    session_id = start_session(grid)
    worker = grid.supervisor.children["worker-w0"]
    os.kill(worker.pid, signal.SIGKILL)
    wait_for(lambda: not grid.session_processes(session_id), 15, "the node to end")
    record = grid.record(session_id)
    assert record["state"] == "terminated"
    assert record["reason"] == "its worker is gone"
    folders = f"{tempfile.gettempdir()}/wg-{session_id[:8]}-*"
    wait_for(lambda: not glob.glob(folders), 10, "the node's temp folder to go")


def test_no_worker_means_not_ready_and_session_not_created(
    make_grid: Callable[..., Grid],
) -> None:
    grid = make_grid(workers=0)
    status = grid.status()
    assert status["workers"] == []
    assert status["ready"] is False
    assert "no worker is alive" in status["message"]
    message = assert_w3c_error(
        new_session(grid, ANY_CHROME), 500, "session not created"
    )
    assert "no worker is alive" in message


def test_no_manager_means_not_ready(make_grid: Callable[..., Grid]) -> None:
    grid = make_grid()
    grid.supervisor.stop("manager")
    wait_for(lambda: not grid.status()["ready"], 15, "status not ready")
    assert "no manager is alive" in grid.status()["message"]
    message = assert_w3c_error(
        new_session(grid, ANY_CHROME), 500, "session not created"
    )
    assert "no manager is alive" in message
