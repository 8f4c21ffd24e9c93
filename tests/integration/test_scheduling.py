"""Several workers and managers, the queue, and the faults of issue 3."""

from __future__ import annotations

import json
import os
import pathlib
import select
import shutil
import signal
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import psutil
import pytest
import requests
from selenium import webdriver

from app import registry, settings
from app.orchestrator import Orchestrator
from tests.harness import COMMANDS, Grid, wait_for
from tests.integration.test_failures import assert_cleaned, start_session
from tests.integration.test_w3c_errors import ANY_CHROME, assert_w3c_error, new_session

SLOW_DRIVER = pathlib.Path(__file__).parents[1] / "fixtures" / "slow-driver"
FIREFOX = {"capabilities": {"alwaysMatch": {"browserName": "firefox"}}}


def with_options(**options: Any) -> dict[str, Any]:
    caps = {"browserName": "chrome", "webgrid:options": options}
    return {"capabilities": {"alwaysMatch": caps}}


def delete(grid: Grid, session_id: str) -> None:
    answer = requests.delete(f"{grid.url}/session/{session_id}", timeout=60)
    assert answer.status_code == 200, answer.text


def post_session(grid: Grid, body: dict[str, Any]) -> socket.socket:
    """A connection to the grid with a new-session request sent on it."""
    payload = json.dumps(body).encode()
    conn = socket.create_connection(("127.0.0.1", grid.port))
    conn.sendall(
        b"POST /session HTTP/1.1\r\nHost: grid\r\n"
        b"Content-Type: application/json\r\n"
        + f"Content-Length: {len(payload)}\r\n\r\n".encode()
        + payload
    )
    return conn


def post_and_hang_up(
    grid: Grid,
    body: dict[str, Any],
    after: float = 0.0,
    until: Callable[[], object] | None = None,
) -> None:
    """Send a new-session request, then close the connection unanswered:
    `after` seconds later, or once `until` returns something true."""
    with post_session(grid, body):
        if until is not None:
            wait_for(until, 10, "the moment to hang up", step=0.01)
        time.sleep(after)


def live_session_ids(grid: Grid) -> set[str]:
    return {str(s) for s in grid.client.smembers("webgrid:sessions:live")}


def test_requests_go_only_to_workers_offering_the_browser(
    make_grid: Callable[..., Grid],
) -> None:
    grid = make_grid(workers=0)
    grid.start_worker("chromeonly", WEBGRID_BROWSERS="chrome")
    grid.start_worker("foxonly", WEBGRID_BROWSERS="firefox")
    wait_for(lambda: grid.status()["slots"]["total"] == 8, 60, "both workers")
    chrome = start_session(grid)
    firefox = start_session(grid, FIREFOX)
    try:
        assert grid.record(chrome)["worker"].startswith("chromeonly@")
        assert grid.record(firefox)["worker"].startswith("foxonly@")
    finally:
        delete(grid, chrome)
        delete(grid, firefox)
    grid.wait_slots_free(timeout=20)


def test_queued_requests_start_in_arrival_order(
    make_grid: Callable[..., Grid],
) -> None:
    grid = make_grid(WEBGRID_SLOTS="1")
    holder = start_session(grid)
    order: list[str] = []
    threads = []
    for _ in range(3):
        thread = threading.Thread(target=lambda: order.append(start_session(grid)))
        thread.start()
        threads.append(thread)
        time.sleep(0.5)
    delete(grid, holder)
    done: list[str] = []
    for _ in range(3):
        session_id = wait_for(lambda: _next_started(grid, order, done), 60, "start")
        delete(grid, session_id)
        done.append(session_id)
    for thread in threads:
        thread.join(60)
    queued = [float(grid.record(s)["queued_at"]) for s in order]
    assert len(order) == 3 and queued == sorted(queued)


def _next_started(grid: Grid, order: list[str], done: list[str]) -> str | None:
    running = [s for s in order if s not in done]
    return running[0] if running else None


def test_client_leaving_the_queue_starts_no_browser(
    make_grid: Callable[..., Grid],
) -> None:
    grid = make_grid(WEBGRID_SLOTS="1")
    holder = start_session(grid)
    post_and_hang_up(grid, ANY_CHROME, after=1.5)
    (waiting,) = live_session_ids(grid) - {holder}
    wait_for(lambda: grid.record(waiting)["state"] == "terminated", 10, "withdrawn")
    assert grid.record(waiting)["reason"] == "its client went away"

    delete(grid, holder)
    assert_cleaned(grid, holder)
    # The worker gets the withdrawn request only now, and must drop it.
    wait_for(lambda: "no longer queued" in grid.log("worker-w0"), 10, "drop")
    assert "node_pid" not in grid.record(waiting)
    grid.wait_slots_free()


def test_client_leaving_while_the_node_starts_stops_it(
    make_grid: Callable[..., Grid],
) -> None:
    grid = make_grid(WEBGRID_CHROMEDRIVER=str(SLOW_DRIVER))
    starting: list[str] = []

    def provisioning() -> bool:
        starting[:] = [
            s
            for s in live_session_ids(grid)
            if grid.record(s).get("state") == "provisioning"
        ]
        return bool(starting)

    # The node's driver takes two seconds to start; the client leaves as
    # soon as the worker has claimed its request.
    post_and_hang_up(grid, ANY_CHROME, until=provisioning)
    (session_id,) = starting
    wait_for(lambda: grid.record(session_id)["state"] == "terminated", 15, "end")
    assert grid.record(session_id)["reason"] == "its client went away"
    assert "running_at" not in grid.record(session_id)
    assert_cleaned(grid, session_id)


def test_client_resetting_on_its_unread_answer_ends_the_session(grid: Grid) -> None:
    """The answer reaches the client's socket, which closes without reading
    it: the kernel resets the connection, and the proxy ends the session."""
    before = live_session_ids(grid)
    with post_session(grid, ANY_CHROME) as conn:
        readable, _, _ = select.select([conn], [], [], 60)
        assert readable, "no answer came"
    (session_id,) = live_session_ids(grid) - before
    wait_for(lambda: grid.record(session_id)["state"] == "terminated", 15, "end")
    assert grid.record(session_id)["reason"] == "its client went away"
    assert f"session {session_id} was answered, but its client reset" in grid.log(
        "proxy"
    )
    assert_cleaned(grid, session_id)


def test_client_leaving_as_its_session_starts_ends_it(grid: Grid) -> None:
    """The client leaves while the proxy cannot see it (held stopped), and
    the manager's answer comes only after: the proxy ends the session."""
    proxy = grid.supervisor.children["proxy"]
    before = live_session_ids(grid)
    recorded: list[str] = []

    def recorded_then_proxy_stopped() -> bool:
        recorded[:] = live_session_ids(grid) - before
        if recorded:
            os.kill(proxy.pid, signal.SIGSTOP)
        return bool(recorded)

    post_and_hang_up(grid, ANY_CHROME, until=recorded_then_proxy_stopped)
    (session_id,) = recorded
    try:
        answered = f"session {session_id} is running; answering"
        wait_for(lambda: answered in grid.log("manager"), 30, "the manager's answer")
    finally:
        os.kill(proxy.pid, signal.SIGCONT)
    wait_for(lambda: grid.record(session_id)["state"] == "terminated", 15, "end")
    assert grid.record(session_id)["reason"] == "its client went away"
    assert f"session {session_id} started after its client left" in grid.log("proxy")
    assert_cleaned(grid, session_id)


def test_metadata_is_kept_in_the_record(grid: Grid) -> None:
    metadata = {"test": "login works", "build": "42"}
    session_id = start_session(grid, with_options(metadata=metadata))
    delete(grid, session_id)
    assert json.loads(grid.record(session_id)["metadata"]) == metadata


def test_idle_timeout_per_session_and_its_cap(
    make_grid: Callable[..., Grid],
) -> None:
    grid = make_grid(WEBGRID_MAX_IDLE_TIMEOUT="3")
    started = []
    for idle in (1, 9999):
        session_id = start_session(grid, with_options(idleTimeout=idle))
        requests.get(f"{grid.url}/session/{session_id}/title", timeout=30)
        started.append(session_id)
    short, capped = started
    wait_for(lambda: grid.record(capped)["state"] == "terminated", 15, "capped end")
    assert grid.record(short)["reason"] == "idle for more than 1 s"
    assert grid.record(capped)["reason"] == "idle for more than 3 s"
    assert_cleaned(grid, capped)


def test_bad_grid_options_are_invalid_argument(grid: Grid) -> None:
    for options in ({"idleTimeout": "soon"}, {"metadata": {"n": 1}}, {"x": 1}):
        answer = new_session(grid, with_options(**options))
        assert_w3c_error(answer, 400, "invalid argument")


def test_one_of_two_managers_killed(make_grid: Callable[..., Grid]) -> None:
    grid = make_grid()
    second = grid.start_process("manager2", COMMANDS["manager"])
    wait_for(lambda: len(grid.client.keys("webgrid:manager:*")) == 2, 30, "two")
    assert second.poll() is None
    first = grid.supervisor.children["manager"]
    os.kill(first.pid, signal.SIGKILL)
    # Its heartbeat is still alive for a while: the proxy must retry.
    for _ in range(4):
        delete(grid, start_session(grid))
    grid.wait_slots_free()


def test_a_manager_dying_with_a_request_passes_it_on(
    make_grid: Callable[..., Grid],
) -> None:
    grid = make_grid()
    grid.start_process("manager2", COMMANDS["manager"])
    wait_for(lambda: len(grid.client.keys("webgrid:manager:*")) == 2, 30, "two")
    managers = {
        name: grid.supervisor.children[name] for name in ("manager", "manager2")
    }
    # Both held stopped: the request waits, sent, at one of them.
    for process in managers.values():
        os.kill(process.pid, signal.SIGSTOP)
    answers: list[requests.Response] = []
    asking = threading.Thread(
        target=lambda: answers.append(new_session(grid, ANY_CHROME))
    )
    asking.start()
    try:
        holder = wait_for(lambda: _holding(grid, managers), 10, "the request sent")
        os.kill(managers[holder].pid, signal.SIGKILL)
    finally:
        for process in managers.values():
            os.kill(process.pid, signal.SIGCONT)
    asking.join(60)
    assert answers and answers[0].status_code == 200, answers
    assert "is gone" in grid.log("proxy")
    delete(grid, answers[0].json()["value"]["sessionId"])
    grid.wait_slots_free()


def _holding(grid: Grid, managers: dict[str, Any]) -> str | None:
    """The name of the manager the proxy has a request open with."""
    proxy = psutil.Process(grid.supervisor.children["proxy"].pid)
    open_to = {c.raddr.port for c in proxy.net_connections("tcp") if c.raddr}
    for name, process in managers.items():
        listening = psutil.Process(process.pid).net_connections("tcp")
        if any(
            c.status == psutil.CONN_LISTEN and c.laddr.port in open_to
            for c in listening
        ):
            return name
    return None


def test_redis_restart_is_survived(make_grid: Callable[..., Grid]) -> None:
    grid = make_grid()
    grid.restart_redis()
    wait_for(grid._ready_status, 60, "the grid back after Redis")
    driver = webdriver.Remote(grid.url, options=webdriver.ChromeOptions())
    assert driver.title == ""
    driver.quit()
    grid.wait_slots_free()


def test_sigterm_drains_a_worker(make_grid: Callable[..., Grid]) -> None:
    grid = make_grid(workers=0)
    draining = grid.start_worker("old", WEBGRID_DRAIN_TIMEOUT="60")
    grid.wait_ready()
    driver = webdriver.Remote(grid.url, options=webdriver.ChromeOptions())
    grid.start_worker("new")
    wait_for(lambda: len(grid.status()["workers"]) == 2, 30, "the new worker")

    draining.send_signal(signal.SIGTERM)
    wait_for(lambda: grid.status()["slots"]["total"] == 4, 10, "old one draining")
    assert driver.title == ""  # the running session still works
    newcomer = start_session(grid)
    assert grid.record(newcomer)["worker"].startswith("new@")
    assert draining.poll() is None
    delete(grid, newcomer)

    driver.quit()
    assert draining.wait(30) == 0


def test_drain_timeout_stops_what_is_left(make_grid: Callable[..., Grid]) -> None:
    grid = make_grid(workers=0)
    worker = grid.start_worker("short", WEBGRID_DRAIN_TIMEOUT="2")
    grid.wait_ready()
    session_id = start_session(grid)
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(30) == 0
    record = grid.record(session_id)
    assert record["state"] == "terminated"
    assert "drain ran out" in record["reason"]
    assert grid.session_processes(session_id) == []


@pytest.mark.parametrize("signum", [signal.SIGQUIT, signal.SIGINT], ids=str)
def test_sigquit_or_ctrl_c_ends_a_drain_at_once(
    make_grid: Callable[..., Grid], signum: int
) -> None:
    grid = make_grid(workers=0)
    worker = grid.start_worker("hurried", WEBGRID_DRAIN_TIMEOUT="60")
    grid.wait_ready()
    session_id = start_session(grid)
    worker.send_signal(signal.SIGTERM)
    wait_for(lambda: "no new session" in grid.log("worker-hurried"), 10, "drain")
    worker.send_signal(signum)
    assert worker.wait(30) == 0
    record = grid.record(session_id)
    assert (record["state"], record["reason"]) == (
        "terminated",
        "its worker was stopped at once",
    )
    assert grid.session_processes(session_id) == []


def test_a_node_started_while_the_worker_stops_is_stopped(grid: Grid) -> None:
    """A node whose start returns after its worker began stopping its nodes
    (a container still starting, say) is stopped at once, not left behind."""
    config = settings.from_environ(
        {"REDIS_URL": grid.redis_url, "WEBGRID_SPARE_NODES": "0"}
    )
    orchestrator = Orchestrator("early@test", config)
    stopped: list[tuple[str, str]] = []
    try:
        orchestrator.on_stop("before", lambda why: stopped.append(("before", why)))
        orchestrator.stop_all("its worker shut down")
        assert stopped == [("before", "its worker shut down")]
        orchestrator.on_stop("after", lambda why: stopped.append(("after", why)))
        assert stopped[1:] == [("after", "its worker shut down")]
    finally:
        orchestrator.provisioner.close()
        orchestrator.client.close()


def kill_node_and_worker(grid: Grid, session_id: str) -> pathlib.Path:
    """SIGKILL the session's node and its worker, let an heir reap them;
    return the folder the node had."""
    record = grid.record(session_id)
    os.killpg(int(record["node_pid"]), signal.SIGKILL)
    os.kill(grid.supervisor.children["worker-w0"].pid, signal.SIGKILL)
    assert grid.record(session_id)["state"] == "running"
    grid.start_worker("heir")
    wait_for(lambda: grid.record(session_id)["state"] == "terminated", 30, "reaped")
    assert grid.record(session_id)["reason"].startswith("its worker w0@")
    assert grid.session_processes(session_id) == []
    return pathlib.Path(record["node_tmpdir"])


def test_reaper_ends_what_a_dead_worker_and_node_left(
    make_grid: Callable[..., Grid],
) -> None:
    grid = make_grid()
    session_id = start_session(grid)
    assert pathlib.Path(grid.record(session_id)["node_tmpdir"]).is_dir()
    folder = kill_node_and_worker(grid, session_id)
    assert not folder.exists()
    assert f"removed {folder}, the folder session {session_id} left" in grid.log(
        "worker-heir"
    )
    delete(grid, start_session(grid))


def test_reaper_leaves_a_folder_another_host_recorded(
    make_grid: Callable[..., Grid],
) -> None:
    grid = make_grid()
    session_id = start_session(grid)
    # The same folder, as a node on another host would have recorded it.
    key = registry.session_key(session_id)
    grid.client.hset(key, "node_host", "elsewhere.example")
    folder = kill_node_and_worker(grid, session_id)
    assert folder.is_dir()
    shutil.rmtree(folder)
    delete(grid, start_session(grid))
