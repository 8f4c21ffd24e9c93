"""Real grids for the tests: Redis, workers, managers and a proxy as processes.

A `Grid` starts the commands of the Procfile, or the one process of the
all-in-one grid, each with its own log file, so a test can start extra
workers, kill one, or read a log.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pathlib
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from typing import Any

import psutil
import redis
import requests

from app import embedded_redis, registry
from app.node.config import NODE_SESSION_ENV

log = logging.getLogger(__name__)

# Fast heartbeats, so faults show within seconds.
FAST = {
    "WEBGRID_HEARTBEAT_INTERVAL": "0.5",
    "WEBGRID_HEARTBEAT_TTL": "3",
    "WEBGRID_LOG_LEVEL": "INFO",
    "WEBGRID_DRAIN_TIMEOUT": "0",
    "SE_OFFLINE": "true",
}


PYTHON = sys.executable
COMMANDS = {
    "manager": [PYTHON, "-m", "app.web", "manager"],
    "worker": [PYTHON, "-m", "celery", "-A", "app", "worker", "--loglevel", "INFO"],
    "proxy": [PYTHON, "-m", "app.web", "proxy"],
}
# Proxy, manager and worker in one process, as the all-in-one grid serves
# them (without its embedded Redis).
ONE_PROCESS = [PYTHON, "-m", "app.web", "proxy", "manager", "worker"]
ALL_IN_ONE = [PYTHON, "-m", "app.run"]
STOP_TIMEOUT = 20.0


class Supervisor:
    """Child processes started together and stopped together."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = dict(env)
        self.children: dict[str, subprocess.Popen[bytes]] = {}

    def spawn(
        self,
        name: str,
        command: list[str],
        *,
        env: Mapping[str, str] | None = None,
        log_path: str | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start `command` as `name`, with `env` on top of the common one;
        its output goes to `log_path` if given."""
        with contextlib.ExitStack() as stack:
            out = stack.enter_context(open(log_path, "ab")) if log_path else None
            process = subprocess.Popen(
                command,
                env={**self.env, **(env or {})},
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT if out else None,
                start_new_session=True,
            )
        self.children[name] = process
        log.debug("started %s as process %d", name, process.pid)
        return process

    def dead(self) -> list[str]:
        """Names of the children that have exited."""
        return [n for n, p in self.children.items() if p.poll() is not None]

    def stop(self, name: str, timeout: float = STOP_TIMEOUT) -> int | None:
        process = self.children.pop(name)
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop within %g s; killing it", name, timeout)
                process.kill()
        return process.wait()

    def stop_all(self) -> None:
        # The proxy first, so no new request arrives; then the manager.
        first = ("proxy", "manager")
        for name in (*first, *reversed(list(self.children))):
            if name in self.children:
                self.stop(name)


class Grid:
    """A grid of real processes around a Redis of its own."""

    def __init__(
        self,
        logs: pathlib.Path,
        env: Mapping[str, str],
        redis_args: tuple[str, ...] = (),
    ) -> None:
        self._stack = contextlib.ExitStack()
        self.redis_port = embedded_redis.free_port()
        self.redis_args = redis_args
        self._redis = self._stack.enter_context(contextlib.ExitStack())
        redis_url = self._redis.enter_context(
            embedded_redis.serve(self.redis_port, redis_args)
        )
        self.redis_url = redis_url
        self.logs = logs
        self.port = embedded_redis.free_port()
        self.env = {
            **os.environ,
            **FAST,
            **env,
            "REDIS_URL": redis_url,
            "WEBGRID_PROXY_PORT": str(self.port),
            "WEBGRID_PROXY_BIND": "127.0.0.1",
        }
        self.supervisor = Supervisor(self.env)
        self.client = registry.connect(redis_url)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, *, workers: int = 1, one_process: bool = False) -> Grid:
        """Start a manager, `workers` workers and the proxy; wait until ready.

        With `one_process`, one process serves the proxy, a manager and a
        worker, as in the all-in-one grid; its name is "grid".
        """
        if one_process:
            self.start_process("grid", ONE_PROCESS)
            self.wait_ready()
            return self
        self.start_process("manager", COMMANDS["manager"])
        for index in range(workers):
            self.start_worker(f"w{index}")
        self.start_process("proxy", COMMANDS["proxy"])
        if workers:
            self.wait_ready()
        else:
            wait_for(self._answers, 30, "the manager to answer /status")
        return self

    def _answers(self) -> bool:
        try:
            return "slots" in self.status()
        except (requests.RequestException, ValueError):
            return False

    def start_worker(self, name: str, **env: str) -> subprocess.Popen[bytes]:
        command = [*COMMANDS["worker"], "--hostname", f"{name}@%h"]
        return self.start_process(f"worker-{name}", command, **env)

    def start_process(
        self, name: str, command: list[str], **env: str
    ) -> subprocess.Popen[bytes]:
        return self.supervisor.spawn(
            name, command, env=env, log_path=str(self.logs / f"{name}.log")
        )

    def restart_redis(self, down: float = 1.0) -> None:
        """Stop Redis (losing everything in it) and start it again."""
        self._redis.close()
        time.sleep(down)
        self._redis.enter_context(
            embedded_redis.serve(self.redis_port, self.redis_args)
        )

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")

    def status(self) -> dict[str, Any]:
        answer = requests.get(self.url + "/status", timeout=10)
        return dict(answer.json()["value"])

    def wait_ready(self, timeout: float = 60) -> dict[str, Any]:
        return wait_for(lambda: self._ready_status(), timeout, "grid ready")

    def _ready_status(self) -> dict[str, Any] | None:
        try:
            status = self.status()
        except (requests.RequestException, ValueError):
            return None
        return status if status.get("ready") else None

    def wait_slots_free(self, timeout: float = 10) -> dict[str, Any]:
        def all_free() -> dict[str, Any] | None:
            status = self.status()
            slots = status.get("slots", {})
            return status if slots.get("used") == 0 else None

        return wait_for(all_free, timeout, "every slot free")

    def processes(self) -> list[psutil.Process]:
        """Processes of any session of this grid that are still running."""
        return session_processes(
            redis_url=self.redis_url, leaders=node_pids(self.client)
        )

    def session_processes(self, session_id: str) -> list[psutil.Process]:
        """Processes of `session_id` that are still running."""
        return session_processes(session_id, leaders=node_pids(self.client, session_id))

    def node_processes(self) -> list[psutil.Process]:
        """Live node processes of this grid, spares included.

        A spare's environment, as the system shows it, is the one it was
        started with: the grid's Redis, but no session.
        """
        return [
            process
            for process in psutil.process_iter(["pid", "ppid", "cmdline", "status"])
            if process.info["status"] != psutil.STATUS_ZOMBIE
            and "app.node" in " ".join(process.info["cmdline"] or ())
            and _environ(process).get("REDIS_URL") == self.redis_url
        ]

    def spares(self, worker: str = "worker-w0") -> list[psutil.Process]:
        """The live spare nodes of the process named `worker`: node processes
        it started that serve no session."""
        pid = self.supervisor.children[worker].pid
        serving = node_pids(self.client)
        return [
            process
            for process in self.node_processes()
            if process.info["ppid"] == pid and process.pid not in serving
        ]

    def kill_node(self, session_id: str) -> None:
        """SIGKILL the node process of `session_id` (not its browser)."""
        for process in self.session_processes(session_id):
            if "app.node" in " ".join(process.cmdline()):
                os.kill(process.pid, signal.SIGKILL)
                return
        raise AssertionError(f"no node process for session {session_id}")

    def record(self, session_id: str) -> dict[str, str]:
        return registry.session(self.client, session_id)

    def stop(self) -> list[psutil.Process]:
        """Stop every process of the grid; return those its sessions left."""
        self.supervisor.stop_all()
        with contextlib.suppress(AssertionError):
            # Nodes of a worker that had to be killed end a moment later.
            wait_for(lambda: not self.processes(), 15, "nodes to end")
        left = self.processes()
        left += [p for p in self.node_processes() if p not in left]
        self.client.close()
        self._stack.close()
        return left


def wait_for(check: Any, timeout: float, what: str, step: float = 0.1) -> Any:
    """Poll `check` until it returns something truthy; fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def session_processes(
    session_id: str | None = None,
    *,
    redis_url: str | None = None,
    leaders: Iterable[int] = (),
) -> list[psutil.Process]:
    """Live processes started for a grid session.

    They are found by the session mark in their environment (for
    `session_id`, or any session of the grid on `redis_url`, or of any grid)
    and by their Unix session: every process a node starts shares the node's,
    whose ids `leaders` are (Chromium's helpers clear their environment).
    """
    leader_set = set(leaders)
    return [
        process
        for process in psutil.process_iter(["pid", "name", "status"])
        if process.info["status"] != psutil.STATUS_ZOMBIE
        and (
            _in_unix_session(process, leader_set)
            or _marked(process, session_id, redis_url)
        )
    ]


def _in_unix_session(process: psutil.Process, leaders: set[int]) -> bool:
    try:
        return bool(leaders) and os.getsid(process.pid) in leaders
    except OSError:
        return False


def _environ(process: psutil.Process) -> dict[str, str]:
    try:
        return dict(process.environ())
    except psutil.Error:
        return {}


def _marked(
    process: psutil.Process, session_id: str | None, redis_url: str | None
) -> bool:
    env = _environ(process)
    mark = env.get(NODE_SESSION_ENV)
    if not mark or (session_id is not None and mark != session_id):
        return False
    return redis_url is None or env.get("REDIS_URL") == redis_url


def node_pids(client: redis.Redis, session_id: str | None = None) -> set[int]:
    """Node process ids recorded for `session_id` (or for every session)."""
    if session_id is not None:
        keys = [registry.session_key(session_id)]
    else:
        keys = [
            key
            for key in client.scan_iter(match=registry.SESSION_PREFIX + "*")
            if str(key).count(":") == 2
        ]
    pids = {client.hget(key, "node_pid") for key in keys}
    return {int(str(pid)) for pid in pids if pid}
