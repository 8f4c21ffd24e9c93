"""The all-in-one grid (`python -m app.run`, what `make run` starts).

Starts Redis (embedded, unless REDIS_URL is set) and one child process
serving the proxy, a manager and a worker (`python -m app.web proxy manager
worker`); logs one line when the grid is ready; on SIGINT or SIGTERM stops
it all, the worker's nodes and browsers included. If the child dies,
everything is stopped and the exit code says so.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from types import FrameType

from app import embedded_redis, logs, settings
from app.errors import GridError

log = logging.getLogger(__name__)

READY_TIMEOUT = 120.0
STOP_TIMEOUT = 20.0

PYTHON = sys.executable
COMMANDS = {
    "manager": [PYTHON, "-m", "app.web", "manager"],
    "worker": [PYTHON, "-m", "celery", "-A", "app", "worker", "--loglevel", "INFO"],
    "proxy": [PYTHON, "-m", "app.web", "proxy"],
}
# The all-in-one grid serves its proxy, manager and worker from one process.
ALL_IN_ONE = {"grid": [PYTHON, "-m", "app.web", "proxy", "manager", "worker"]}
# The all-in-one grid stops its worker's sessions at once when it stops;
# a worker of its own would give them WEBGRID_DRAIN_TIMEOUT to end.
WORKER_ENV = {"WEBGRID_DRAIN_TIMEOUT": "0"}


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


def wait_ready(port: int, supervisor: Supervisor, timeout: float) -> str:
    """Wait until /status says ready; return its message."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if supervisor.dead():
            raise GridError(f"{', '.join(supervisor.dead())} exited during start")
        value = proxy_status(port)
        if value.get("ready"):
            return str(value.get("message", ""))
        time.sleep(0.2)
    raise GridError(f"the grid was not ready within {timeout:g} s")


def proxy_status(port: int) -> dict[str, object]:
    """The value of the proxy's /status on loopback `port`; {} if none.

    Asked over a bare socket, since urllib would cost the supervisor, which
    does little else, 8 MiB of imports (ssl among them).
    """
    request = b"GET /status HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n"
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as conn:
            conn.sendall(request)
            answer = b"".join(iter(lambda: conn.recv(65536), b""))
        head, _, body = answer.partition(b"\r\n\r\n")
        if not head.startswith((b"HTTP/1.1 200 ", b"HTTP/1.0 200 ")):
            return {}
        return dict(json.loads(body)["value"])
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def run(config: settings.Settings) -> int:
    stop = threading.Event()

    def on_signal(signum: int, _: FrameType | None) -> None:
        log.info("received %s; stopping the grid", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    with contextlib.ExitStack() as stack:
        redis_url = os.environ.get("REDIS_URL") or stack.enter_context(
            embedded_redis.serve()
        )
        supervisor = Supervisor({**os.environ, "REDIS_URL": redis_url})
        stack.callback(supervisor.stop_all)
        for name, command in ALL_IN_ONE.items():
            supervisor.spawn(name, command, env=WORKER_ENV)
        message = wait_ready(config.proxy_port, supervisor, READY_TIMEOUT)
        log.info(
            "grid ready at http://localhost:%d (%s); Ctrl-C stops it",
            config.proxy_port,
            message,
        )
        while not stop.wait(0.5):
            if supervisor.dead():
                log.error("%s exited; stopping the grid", ", ".join(supervisor.dead()))
                return 1
    log.info("grid stopped")
    return 0


def main() -> int:
    try:
        config = settings.get()
    except GridError as exc:
        print(f"webgrid: {exc}", file=sys.stderr)
        return 2
    logs.setup(config.log_level)
    try:
        return run(config)
    except GridError as exc:
        log.error("%s", exc)
        return 1


if __name__ == "__main__":
    sys.exit(main())
