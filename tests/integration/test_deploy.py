"""The README's ways to run the grid: `make run` and the Procfile."""

from __future__ import annotations

import glob
import os
import pathlib
import re
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator

import psutil
import pytest
import requests
from selenium import webdriver

from app import embedded_redis, registry
from tests.harness import ALL_IN_ONE, COMMANDS, node_pids, session_processes, wait_for

ROOT = pathlib.Path(__file__).parents[2]
VENV_BIN = ROOT / ".venv" / "bin"


def environment(**values: str) -> dict[str, str]:
    """This process's environment without REDIS_URL, plus `values`."""
    base = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    return {**base, "SE_OFFLINE": "true", **values}


def started(
    command: list[str], log: pathlib.Path, env: dict[str, str]
) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        return subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop(process: subprocess.Popen[bytes], signum: int = signal.SIGTERM) -> int:
    process.send_signal(signum)
    try:
        return process.wait(60)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        raise


def ready(url: str) -> bool:
    try:
        return bool(requests.get(url + "/status", timeout=5).json()["value"]["ready"])
    except (requests.RequestException, ValueError, KeyError):
        return False


def redis_alive(url: str) -> bool:
    port = url.rsplit(":", 1)[1].split("/")[0]
    return any(
        p.info["name"] == "redis-server"
        and p.info["status"] != psutil.STATUS_ZOMBIE
        and f":{port}" in " ".join(p.info["cmdline"] or ())
        for p in psutil.process_iter(["name", "status", "cmdline"])
    )


@pytest.fixture
def log_file(tmp_path: pathlib.Path) -> Iterator[pathlib.Path]:
    path = tmp_path / "out.log"
    yield path
    if path.exists():
        print(path.read_text(errors="replace")[-3000:])


@pytest.mark.parametrize(
    "ctrl_c", [False, True], ids=["sigterm-to-make", "sigint-to-the-group"]
)
def test_make_run_serves_and_stops_cleanly(
    log_file: pathlib.Path, ctrl_c: bool
) -> None:
    port = embedded_redis.free_port()
    env = environment(WEBGRID_PROXY_PORT=str(port), WEBGRID_PROXY_BIND="127.0.0.1")
    make = started(["make", "run"], log_file, env)
    url = f"http://127.0.0.1:{port}"
    wait_for(lambda: "grid ready at" in log_file.read_text(), 180, "ready line")
    assert ready(url)
    redis_url = re.search(r"embedded Redis serving at (\S+)", log_file.read_text())
    assert redis_url, "make run logs the URL of its embedded Redis"
    driver = webdriver.Remote(url, options=webdriver.ChromeOptions())
    session_id = driver.session_id or ""
    leaders = node_pids(registry.connect(redis_url.group(1)), session_id)
    assert session_processes(session_id, leaders=leaders)

    if ctrl_c:
        os.killpg(make.pid, signal.SIGINT)
        code = make.wait(60)
    else:
        code = stop(make)
    # make dies by the signal it got, once its recipe has finished.
    assert code == -(signal.SIGINT if ctrl_c else signal.SIGTERM)
    assert session_processes(session_id, leaders=leaders) == []
    assert not redis_alive(redis_url.group(1))
    assert "grid stopped" in log_file.read_text()


def start_all_in_one(log_file: pathlib.Path) -> tuple[subprocess.Popen[bytes], str]:
    """`python -m app.run` with its embedded Redis; the process, Redis's URL."""
    port = embedded_redis.free_port()
    env = environment(WEBGRID_PROXY_PORT=str(port), WEBGRID_PROXY_BIND="127.0.0.1")
    grid = started(ALL_IN_ONE, log_file, env)
    wait_for(lambda: "grid ready at" in log_file.read_text(), 180, "ready line")
    found = re.search(r"embedded Redis serving at (\S+)", log_file.read_text())
    assert found
    return grid, found.group(1)


def children_named(process: subprocess.Popen[bytes], name: str) -> list[int]:
    return [c.pid for c in psutil.Process(process.pid).children() if name in c.name()]


def test_all_in_one_killed_outright_leaves_nothing(log_file: pathlib.Path) -> None:
    folders = set(glob.glob(f"{tempfile.gettempdir()}/webgrid-redis-*"))
    grid, redis_url = start_all_in_one(log_file)
    url = log_file.read_text().split("grid ready at ", 1)[1].split()[0]
    driver = webdriver.Remote(url, options=webdriver.ChromeOptions())
    session_id = driver.session_id or ""
    leaders = node_pids(registry.connect(redis_url), session_id)
    spares = children_named(grid, "python")
    assert spares, "the grid keeps a spare node"

    os.kill(grid.pid, signal.SIGKILL)
    grid.wait(10)
    wait_for(lambda: not redis_alive(redis_url), 10, "Redis to die with the grid")
    wait_for(lambda: not session_processes(session_id, leaders=leaders), 30, "the node")
    wait_for(lambda: not any(psutil.pid_exists(p) for p in spares), 10, "spare")
    assert set(glob.glob(f"{tempfile.gettempdir()}/webgrid-redis-*")) <= folders


def test_all_in_one_stops_when_its_redis_dies(log_file: pathlib.Path) -> None:
    grid, redis_url = start_all_in_one(log_file)
    url = log_file.read_text().split("grid ready at ", 1)[1].split()[0]
    driver = webdriver.Remote(url, options=webdriver.ChromeOptions())
    session_id = driver.session_id or ""
    leaders = node_pids(registry.connect(redis_url), session_id)

    (redis_pid,) = children_named(grid, "redis-server")
    os.kill(redis_pid, signal.SIGKILL)
    assert grid.wait(60) == 1
    assert "the embedded Redis exited with code -9; stopping the grid" in (
        log_file.read_text()
    )
    assert session_processes(session_id, leaders=leaders) == []


def test_all_in_one_that_never_gets_ready_stops(log_file: pathlib.Path) -> None:
    port = embedded_redis.free_port()
    env = environment(
        WEBGRID_PROXY_PORT=str(port),
        WEBGRID_PROXY_BIND="127.0.0.1",
        WEBGRID_READY_TIMEOUT="3",
        # A worker that offers nothing: the grid is never ready.
        WEBGRID_CHROME_BINARY="/nonexistent/chromium",
    )
    grid = started(ALL_IN_ONE, log_file, env)
    assert grid.wait(60) == 1
    text = log_file.read_text()
    assert (
        "the grid was not ready within 3 s (WEBGRID_READY_TIMEOUT): "
        "no live worker offers a browser" in text
    )
    redis_url = re.search(r"embedded Redis serving at (\S+)", text)
    assert redis_url and not redis_alive(redis_url.group(1))
    assert "grid ready at" not in text


def test_procfile_under_honcho_and_an_extra_worker(log_file: pathlib.Path) -> None:
    port = embedded_redis.free_port()
    path = f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}"
    with embedded_redis.serve() as redis_url:
        env = environment(
            REDIS_URL=redis_url,
            WEBGRID_PROXY_PORT=str(port),
            WEBGRID_PROXY_BIND="127.0.0.1",
            WEBGRID_SLOTS="1",
            PATH=path,
        )
        honcho = started(
            [str(shutil.which("honcho", path=path)), "start"], log_file, env
        )
        url = f"http://127.0.0.1:{port}"
        try:
            wait_for(lambda: ready(url), 90, "the Procfile grid")
            extra = _extra_worker(log_file.parent / "extra.log", env)
            wait_for(lambda: _total_slots(url) == 3, 60, "the extra worker's slots")
            assert stop(extra) == 0
            driver = webdriver.Remote(url, options=webdriver.ChromeOptions())
            assert driver.title == ""
            driver.quit()
            leaders = node_pids(registry.connect(redis_url))
        finally:
            stop(honcho)
        assert leaders
        assert session_processes(redis_url=redis_url, leaders=leaders) == []


def _extra_worker(log: pathlib.Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    command = [*COMMANDS["worker"], "--hostname", "extra@%h"]
    return started(command, log, {**env, "WEBGRID_SLOTS": "2"})


def _total_slots(url: str) -> int:
    return int(
        requests.get(url + "/status", timeout=5).json()["value"]["slots"]["total"]
    )
