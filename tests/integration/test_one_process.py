"""One process serving the proxy, a manager and a worker, as the all-in-one
grid runs them (`python -m app.web proxy manager worker`): the worker is on
gevent's pool, so nothing it waits for may hold up the proxy, and its
shutdown must stop what it started."""

from __future__ import annotations

import concurrent.futures
import signal
from collections.abc import Callable

import pytest
from selenium import webdriver

from tests.harness import Grid, wait_for
from tests.integration.test_spares import node_of, one_spare

GRID = "grid"


def chrome(grid: Grid) -> webdriver.Remote:
    return webdriver.Remote(grid.url, options=webdriver.ChromeOptions())


def browse(driver: webdriver.Remote) -> list[object]:
    return [driver.execute_script("return arguments[0] * 2", n) for n in range(20)]


def test_sessions_side_by_side_and_a_new_spare(
    make_grid: Callable[..., Grid],
) -> None:
    grid = make_grid(one_process=True, WEBGRID_SLOTS="2")
    first_spare = one_spare(grid, worker=GRID)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        drivers = list(pool.map(lambda _: chrome(grid), range(2)))
        try:
            # The spare became the first node, and its successor started in
            # the same process as the proxy, which went on serving meanwhile.
            assert first_spare.pid in {
                node_of(grid, d.session_id or "").pid for d in drivers
            }
            one_spare(grid, other_than=first_spare.pid, worker=GRID)
            done = list(pool.map(browse, drivers))
            assert done == [[n * 2 for n in range(20)]] * 2
        finally:
            for driver in drivers:
                driver.quit()
    grid.wait_slots_free()
    assert grid.processes() == []


def test_sigterm_drains_while_the_proxy_serves(
    make_grid: Callable[..., Grid],
) -> None:
    grid = make_grid(one_process=True, WEBGRID_DRAIN_TIMEOUT="60")
    process = grid.supervisor.children[GRID]
    driver = chrome(grid)
    session_id = driver.session_id or ""

    process.send_signal(signal.SIGTERM)
    wait_for(lambda: "takes no new session" in grid.log(GRID), 10, "draining")
    assert driver.execute_script("return 'still served'") == "still served"
    assert process.poll() is None
    driver.quit()
    assert process.wait(30) == 0
    assert grid.record(session_id)["reason"] == "deleted by the client"
    assert grid.processes() == []
    assert grid.node_processes() == []


@pytest.mark.parametrize(
    ("signum", "drain", "reason"),
    [
        (signal.SIGTERM, "0", "its worker shut down and the 0 s drain ran out"),
        (signal.SIGQUIT, "60", "its worker was stopped at once"),
    ],
    ids=["sigterm-without-drain", "sigquit"],
)
def test_a_stop_signal_ends_the_running_session(
    make_grid: Callable[..., Grid], signum: int, drain: str, reason: str
) -> None:
    grid = make_grid(one_process=True, WEBGRID_DRAIN_TIMEOUT=drain)
    process = grid.supervisor.children[GRID]
    session_id = chrome(grid).session_id or ""

    process.send_signal(signum)
    assert process.wait(30) == 0
    record = grid.record(session_id)
    assert (record["state"], record["reason"]) == ("terminated", reason)
    assert grid.session_processes(session_id) == []
    assert grid.node_processes() == []
