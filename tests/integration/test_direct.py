"""Plain commands go from the proxy straight to the driver, a hop fewer,
where the node listens on loopback; the node still keeps the session's
idle timeout and sees what ends the session."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable, Iterator

import psutil
import requests

from app import registry
from tests.harness import Grid, wait_for
from tests.integration.test_failures import assert_cleaned, start_session
from tests.integration.test_scheduling import with_options


@contextlib.contextmanager
def node_paused(grid: Grid, session_id: str) -> Iterator[psutil.Process]:
    """SIGSTOP the node agent of `session_id` (not its driver or browser)."""
    node = next(
        process
        for process in grid.session_processes(session_id)
        if "app.node" in " ".join(process.cmdline())
    )
    os.kill(node.pid, signal.SIGSTOP)
    try:
        yield node
    finally:
        os.kill(node.pid, signal.SIGCONT)


def title(grid: Grid, session_id: str, timeout: float = 10) -> requests.Response:
    return requests.get(f"{grid.url}/session/{session_id}/title", timeout=timeout)


def test_plain_commands_do_not_pass_through_the_node(grid: Grid) -> None:
    session_id = start_session(grid)
    direct = str(grid.client.get(registry.direct_key(session_id)))
    address, _, driver_id = direct.partition(" ")
    assert address.startswith("127.0.0.1:")
    assert driver_id and driver_id != session_id
    with node_paused(grid, session_id):
        answer = title(grid, session_id)
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"value": ""}
        script = requests.post(
            f"{grid.url}/session/{session_id}/execute/sync",
            json={"script": "return arguments[0]", "args": [driver_id]},
            timeout=10,
        )
        # The driver's own session id never reaches the client.
        assert script.json() == {"value": session_id}
    wait_for(
        lambda: grid.client.get(registry.touch_key(session_id)) is not None,
        5,
        "the proxy to note the session's activity",
    )
    requests.delete(f"{grid.url}/session/{session_id}", timeout=30)
    assert_cleaned(grid, session_id)


def test_commands_that_end_the_session_go_through_the_node(grid: Grid) -> None:
    session_id = start_session(grid)
    with node_paused(grid, session_id):
        try:
            requests.delete(f"{grid.url}/session/{session_id}", timeout=2)
        except requests.Timeout:
            pass
        else:
            raise AssertionError("quit answered while the node was stopped")
    assert_cleaned(grid, session_id)
    assert grid.record(session_id)["reason"] == "deleted by the client"
    assert grid.client.get(registry.direct_key(session_id)) is None


def test_commands_straight_to_the_driver_keep_the_session_alive(
    make_grid: Callable[..., Grid],
) -> None:
    grid = make_grid()
    session_id = start_session(grid, with_options(idleTimeout=3))
    busy_until = time.monotonic() + 8
    while time.monotonic() < busy_until:
        assert title(grid, session_id).status_code == 200
        time.sleep(0.5)
    assert grid.record(session_id)["state"] == "running"
    wait_for(lambda: grid.record(session_id)["state"] == "terminated", 15, "idle end")
    assert grid.record(session_id)["reason"] == "idle for more than 3 s"
    assert_cleaned(grid, session_id)
    gone = title(grid, session_id)
    assert gone.status_code == 404
    assert gone.json()["value"]["error"] == "invalid session id"


def test_a_driver_that_died_ends_the_session(grid: Grid) -> None:
    session_id = start_session(grid)
    driver = next(
        process
        for process in grid.session_processes(session_id)
        if process.name() == "chromedriver"
    )
    driver.kill()
    # The command that finds the driver dead is asked of the node, which
    # says what happened; the commands after it find no session.
    first = title(grid, session_id).json()["value"]
    assert first["error"] in ("unknown error", "invalid session id"), first
    wait_for(
        lambda: title(grid, session_id).status_code == 404, 15, "invalid session id"
    )
    assert_cleaned(grid, session_id)
    assert "driver" in grid.record(session_id)["reason"]
