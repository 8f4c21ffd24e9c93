"""Spare nodes: a worker keeps a node process started ahead of its session.

Real workers, spares and browsers; a spare is found as a node process of
its worker that serves no session.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import pathlib
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator

import psutil
import pytest
from selenium import webdriver

from app import embedded_redis, settings
from app.node.spare import SPARE_FLAG, encode_orders
from app.provisioners.local import (
    NODE_COMMAND,
    SPARE_GRACE,
    LocalNode,
    LocalProvisioner,
    SparePool,
)
from tests.harness import Grid, session_processes, wait_for
from tests.integration.test_failures import assert_cleaned

ROOT = pathlib.Path(__file__).parents[2]
# A stand-in spare that can never take orders: it closes its stdin, lingers.
DEAF = ("sh", "-c", "exec 0<&-; exec sleep 61")
DEAF_RUNNING = ("sleep", "61")
# One that ignores the end of its stdin, like a spare still importing, and
# has a child in its group.
SLOW = ("sh", "-c", "sleep 62; true")
SLOW_CHILD = ("sleep", "62")
# One that takes its orders, says it started 3 s later, and runs on.
REPORTING = (
    sys.executable,
    "-c",
    "import os, sys, time; sys.stdin.readline(); time.sleep(3); "
    "os.close(int(os.environ['WEBGRID_NODE_STARTED_FD'])); time.sleep(63)",
)
# One that takes its orders and exits without a word.
FAILING = ("sh", "-c", "read orders; exit 3")
Spared = tuple[SparePool, LocalNode]


def exited(process: psutil.Process) -> bool:
    """Gone, or a zombie nobody has reaped yet."""
    try:
        return process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def one_spare(
    grid: Grid, other_than: int = 0, worker: str = "worker-w0"
) -> psutil.Process:
    """The worker's spare, waiting for one to start if need be."""
    spares = wait_for(
        lambda: [p for p in grid.spares(worker) if p.pid != other_than],
        30,
        "a spare",
    )
    assert len(spares) == 1, f"one spare expected, found {spares}"
    return spares[0]


def node_of(grid: Grid, session_id: str) -> psutil.Process:
    return psutil.Process(int(grid.record(session_id)["node_pid"]))


def folders_of(session_id: str) -> list[str]:
    return glob.glob(f"{tempfile.gettempdir()}/wg-{session_id[:8]}-*")


def assert_runs_as_ordered(node: psutil.Process, session_id: str) -> None:
    """The node works in the session's folder, and its driver inherited the
    session's mark and TMPDIR, as from a cold start."""
    (folder,) = folders_of(session_id)
    assert node.cwd() == folder
    (driver,) = [p for p in node.children() if p.name() == "chromedriver"]
    env = driver.environ()
    assert env["WEBGRID_NODE_SESSION"] == session_id
    assert env["TMPDIR"] == folder


def browse(grid: Grid, pages: str) -> webdriver.Remote:
    driver = webdriver.Remote(grid.url, options=webdriver.ChromeOptions())
    driver.get(pages + "/form.html")
    assert driver.title == "Grid test form"
    return driver


def quit_and_check(grid: Grid, driver: webdriver.Remote) -> None:
    session_id = driver.session_id or ""
    driver.quit()
    assert_cleaned(grid, session_id)
    wait_for(lambda: not folders_of(session_id), 10, "the session's folder to go")


# -- in a grid ---------------------------------------------------------------


def test_a_session_runs_in_the_spare_and_the_next_in_its_successor(
    make_grid: Callable[..., Grid], pages: str
) -> None:
    grid = make_grid()
    first_spare = one_spare(grid)
    assert SPARE_FLAG in first_spare.cmdline()

    first = browse(grid, pages)
    session_id = first.session_id or ""
    node = node_of(grid, session_id)
    assert node.pid == first_spare.pid
    assert_runs_as_ordered(node, session_id)
    # The next spare starts while the session runs.
    second_spare = one_spare(grid, other_than=first_spare.pid)
    quit_and_check(grid, first)
    assert not first_spare.is_running()

    second = browse(grid, pages)
    assert node_of(grid, second.session_id or "").pid == second_spare.pid
    quit_and_check(grid, second)


def test_the_spare_exits_when_its_worker_is_killed(
    make_grid: Callable[..., Grid],
) -> None:
    grid = make_grid()
    spare = one_spare(grid)
    os.kill(grid.supervisor.children["worker-w0"].pid, signal.SIGKILL)
    wait_for(lambda: exited(spare), 10, "the spare to see its stdin end")


def test_the_spare_is_stopped_and_reaped_when_its_worker_stops(
    make_grid: Callable[..., Grid],
) -> None:
    grid = make_grid()
    spare = one_spare(grid)
    assert grid.supervisor.stop("worker-w0") == 0
    # Reaped by the worker itself, before it exited.
    assert not psutil.pid_exists(spare.pid)


def test_no_spare_when_disabled_and_sessions_start_cold(
    make_grid: Callable[..., Grid], pages: str
) -> None:
    grid = make_grid(WEBGRID_SPARE_NODES="0")
    driver = browse(grid, pages)
    assert SPARE_FLAG not in node_of(grid, driver.session_id or "").cmdline()
    quit_and_check(grid, driver)
    # A spare, were one started, would be there by now.
    time.sleep(3)
    assert grid.node_processes() == []


def test_a_spare_killed_before_use_gives_way_to_a_cold_start(
    make_grid: Callable[..., Grid], pages: str
) -> None:
    grid = make_grid()
    spare = one_spare(grid)
    spare.kill()
    wait_for(lambda: exited(spare), 10, "the spare to die")

    driver = browse(grid, pages)
    node = node_of(grid, driver.session_id or "")
    assert node.pid != spare.pid
    assert SPARE_FLAG not in node.cmdline()
    assert f"spare node {spare.pid} had exited with code -9" in grid.log("worker-w0")
    quit_and_check(grid, driver)
    one_spare(grid, other_than=spare.pid)


# -- a spare node process alone ----------------------------------------------


def spare_node(stdin: bytes) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "app.node", SPARE_FLAG],
        input=stdin,
        cwd=ROOT,
        capture_output=True,
        timeout=60,
    )


def test_a_spare_node_exits_quietly_at_the_end_of_its_stdin() -> None:
    done = spare_node(b"")
    assert done.returncode == 0
    assert done.stderr == b""


def test_a_spare_node_refuses_orders_that_are_not_json() -> None:
    done = spare_node(b"TMPDIR=/tmp\n")
    assert done.returncode == 2
    assert b"node: a spare node's orders are not JSON" in done.stderr


def test_a_spare_node_ordered_without_a_session_says_what_is_missing() -> None:
    done = spare_node(encode_orders({"WEBGRID_NODE_BROWSER": "chrome"}))
    assert done.returncode == 2
    assert b"a node needs WEBGRID_NODE_SESSION" in done.stderr


# -- the pool and the provisioner, with stand-in spares ----------------------


@pytest.fixture
def redis_url() -> Iterator[str]:
    with embedded_redis.serve() as url:
        yield url


def running(command: tuple[str, ...]) -> list[psutil.Process]:
    """Live processes running exactly `command`, wherever they are."""
    return [
        p
        for p in psutil.process_iter(["cmdline", "status"])
        if p.info["cmdline"] == list(command)
        and p.info["status"] != psutil.STATUS_ZOMBIE
    ]


def test_a_spare_that_takes_no_orders_gives_way_to_a_cold_node(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    config = settings.Settings(redis_url=redis_url, spare_nodes=0)
    pool = SparePool(1, redis_url, command=DEAF)
    provisioner = LocalProvisioner(config, spares=pool)
    wait_for(pool.ready, 10, "the stand-in spare")
    (deaf,) = wait_for(lambda: running(DEAF_RUNNING), 10, "its stdin to close")
    session_id = uuid.uuid4().hex
    with caplog.at_level(logging.WARNING, logger="app.provisioners.local"):
        node = provisioner.start(session_id, "chrome", {}, "w-test")
    try:
        assert node.process.args == NODE_COMMAND
        assert f"spare node {deaf.pid} took no orders" in caplog.text
        assert f"session {session_id} starts cold" in caplog.text
        assert not psutil.pid_exists(deaf.pid)
    finally:
        node.stop()
        provisioner.close()
    wait_for(lambda: not folders_of(session_id), 10, "the node's folder to go")
    leaders = [node.process.pid]
    assert session_processes(session_id, leaders=leaders) == []
    # The spare started after the cold node was stopped by `close()`.
    assert running(DEAF_RUNNING) == []


def test_a_spare_that_cannot_start_leaves_sessions_to_start_cold(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    pool = SparePool(1, redis_url, command=("/nowhere/python",))
    with caplog.at_level(logging.WARNING, logger="app.provisioners.local"):
        pool.refill()
        pool.close()
    assert "could not start a spare node; nodes start cold" in caplog.text
    assert pool.take() is None


def test_close_kills_a_spare_that_ignores_the_end_of_its_stdin(
    redis_url: str,
) -> None:
    pool = SparePool(1, redis_url, command=SLOW)
    pool.refill()
    wait_for(pool.ready, 10, "the stand-in spare")
    started = time.monotonic()
    pool.close()
    assert time.monotonic() - started >= SPARE_GRACE
    assert running(SLOW) == running(SLOW_CHILD) == []
    pool.refill()
    assert pool.ready() == 0
    assert running(SLOW) == []


def test_close_right_after_refill_leaves_no_spare(redis_url: str) -> None:
    pool = SparePool(2, redis_url, command=SLOW)
    pool.refill()
    pool.close()
    assert running(SLOW) == running(SLOW_CHILD) == []


def open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


@contextlib.contextmanager
def ordered(redis_url: str, stand_in: tuple[str, ...]) -> Iterator[Spared]:
    """A session given to a stand-in spare; afterwards, every process and
    pipe of the provisioner's is gone."""
    descriptors = open_descriptors()
    config = settings.Settings(redis_url=redis_url, spare_nodes=0)
    pool = SparePool(1, redis_url, command=stand_in)
    provisioner = LocalProvisioner(config, spares=pool)
    wait_for(pool.ready, 10, "the stand-in spare")
    node = provisioner.start(uuid.uuid4().hex, "chrome", {}, "w-test")
    try:
        assert node.process.args == stand_in
        yield pool, node
    finally:
        node.stop()
        provisioner.close()
    assert running(stand_in) == []
    wait_for(lambda: open_descriptors() == descriptors, 10, "the pipes to close")


def test_the_next_spare_starts_once_the_node_says_its_browser_started(
    redis_url: str,
) -> None:
    with ordered(redis_url, REPORTING) as (pool, node):
        # Not while the node is starting its browser (3 s here)...
        time.sleep(1)
        assert pool.ready() == 0
        # ...but once it says it has, though it runs on.
        wait_for(pool.ready, 10, "the next spare")
        assert node.process.poll() is None


def test_a_node_that_ends_without_a_word_lets_the_next_spare_start(
    redis_url: str,
) -> None:
    with ordered(redis_url, FAILING) as (pool, node):
        assert node.wait(10) == 3
        wait_for(pool.ready, 10, "the next spare")
