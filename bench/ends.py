"""The remote ends a benchmark compares: the grid and a bare chromedriver.

An end is anything with a `name`, a `url` that serves the W3C WebDriver
protocol once `start()` has returned, and a `stop()` that ends all it
started. Its `parts()` are its own long-lived processes by role (never a
session's driver or browser), and `counted` names the roles that make up
its control plane, whose memory the benchmark compares. Adding an end is one
more factory that builds a `ProcessEnd` from its command line (Selenium
Grid 4's is in `bench.grid4`).
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from typing import IO, Protocol

import psutil

from app import settings as grid_settings
from bench import processes

ROOT = pathlib.Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
CHROMEDRIVER = "/usr/bin/chromedriver"
READY_TIMEOUT = 120.0

Parts = Callable[[psutil.Process], dict[str, psutil.Process]]
# The all-in-one grid is one process, serving all three; its children are
# told apart by their command lines.
GRID_PROCESS = "proxy, manager and worker"
GRID_ROLES = (
    ("redis", ("redis-server",)),
    ("spare node", ("app.node", "--spare")),
)


class EndError(RuntimeError):
    """An end did not start or did not serve; the message names it."""


class End(Protocol):
    name: str
    url: str
    counted: tuple[str, ...]

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def parts(self) -> dict[str, psutil.Process]: ...


class ProcessEnd:
    """An end served by one child process (and whatever that one starts)."""

    def __init__(
        self,
        name: str,
        command: list[str],
        *,
        port: int,
        env: dict[str, str] | None = None,
        stop_timeout: float = 10.0,
        own_tmpdir: bool = True,
        parts: Parts | None = None,
        counted: tuple[str, ...] | None = None,
    ) -> None:
        self.name = name
        self.command = command
        self.url = f"http://127.0.0.1:{port}"
        self.env = dict(os.environ if env is None else env)
        self.stop_timeout = stop_timeout
        self.own_tmpdir = own_tmpdir
        self.counted = counted or (name,)
        # By default the one process started is the whole control plane.
        self._parts = parts or (lambda root: {self.counted[0]: root})
        self.log_path = log_path(name)
        self.process: subprocess.Popen[bytes] | None = None
        self.tmpdir: str | None = None
        self._log: IO[bytes] | None = None

    def __repr__(self) -> str:
        return f"ProcessEnd(name={self.name!r}, url={self.url!r})"

    def start(self) -> None:
        """Start the process; return once its /status says ready."""
        RESULTS.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("wb")
        env = {**self.env, **processes.tags(self.name)}
        if self.own_tmpdir:
            # Chromium leaves folders in the temp folder; this one is removed.
            # NOTE: kept short, as Chromium puts a Unix socket (a path of at
            # most 107 bytes) two levels below it.
            self.tmpdir = env["TMPDIR"] = tempfile.mkdtemp(prefix="wgb-")
        self.process = subprocess.Popen(
            self.command,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._wait_ready(self.process, READY_TIMEOUT)

    def parts(self) -> dict[str, psutil.Process]:
        """The end's own processes by role; empty if it is not running."""
        if self.process is None or self.process.poll() is not None:
            return {}
        try:
            return self._parts(psutil.Process(self.process.pid))
        except psutil.Error:
            return {}

    def stop(self) -> None:
        """Ask the process to stop (SIGTERM); kill its group if it will not.

        What the process leaves behind in its process group (a driver or a
        browser it did not stop) is killed too, and named in a warning.
        """
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(self.stop_timeout)
            except subprocess.TimeoutExpired:
                warn(f"{self.name} ignored SIGTERM for {self.stop_timeout:g} s")
                signal_group(self.process.pid, signal.SIGKILL)
                self.process.wait()
        if self.process is not None:
            self._reap_group(self.process.pid)
        if self._log is not None:
            self._log.close()
        if self.tmpdir is not None:
            shutil.rmtree(self.tmpdir, ignore_errors=True)

    def _reap_group(self, group: int) -> None:
        # NOTE: while a group has members its id cannot be reused, so these
        # all descend from the process this end started.
        left = [p for p in processes.group(group) if processes.is_alive(p)]
        if left:
            warn(f"{self.name} left {processes.describe(left)}; killing them")
            for process in left:
                with contextlib.suppress(psutil.Error):
                    process.kill()
            processes.wait_gone(left, self.stop_timeout)

    def _wait_ready(self, process: subprocess.Popen[bytes], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise EndError(
                    f"{self.name} exited with code {process.returncode} "
                    f"while starting; see {self.log_path}"
                )
            if is_ready(self.url):
                return
            time.sleep(0.1)
        raise EndError(
            f"{self.name} was not ready within {timeout:g} s; see {self.log_path}"
        )


def signal_group(group: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(group, signum)


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


def is_ready(url: str) -> bool:
    """Whether the end at `url` says in /status that it takes new sessions."""
    try:
        with urllib.request.urlopen(f"{url}/status", timeout=2) as answer:
            return json.loads(answer.read())["value"]["ready"] is True
    except (OSError, ValueError, KeyError, TypeError):
        return False


def log_path(name: str) -> pathlib.Path:
    """Where the output of the end called `name` goes."""
    return RESULTS / f"{name}.log"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def bare() -> ProcessEnd:
    """Debian's chromedriver on its own: the baseline."""
    port = free_port()
    command = [CHROMEDRIVER, f"--port={port}"]
    return ProcessEnd("bare", command, port=port, counted=("chromedriver",))


def grid(
    slots: int, idle_timeout: float, *, name: str = "grid", **settings: str
) -> ProcessEnd:
    """The all-in-one grid (`python -m app.run`), with its embedded Redis;
    `settings` are environment variables on top of this process's."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env.update(
        WEBGRID_PROXY_PORT=str(port),
        WEBGRID_PROXY_BIND="127.0.0.1",
        WEBGRID_LOG_LEVEL="WARNING",
        WEBGRID_SLOTS=str(slots),
        WEBGRID_IDLE_TIMEOUT=f"{idle_timeout:g}",
        **settings,
    )
    command = [sys.executable, "-m", "app.run"]
    # NOTE: The grid gives each session a temp folder of its own, with a long name:
    # under another folder than /tmp, Chromium's socket path gets too long.
    return ProcessEnd(
        name,
        command,
        port=port,
        env=env,
        stop_timeout=90.0,
        own_tmpdir=False,
        parts=grid_parts,
        counted=(GRID_PROCESS, *spare_part(env)),
    )


def spare_part(env: dict[str, str]) -> tuple[str, ...]:
    """The spare node, if the grid keeps one (WEBGRID_SPARE_NODES)."""
    return ("spare node",) if grid_settings.from_environ(env).spare_nodes else ()


def grid_parts(grid: psutil.Process) -> dict[str, psutil.Process]:
    """The all-in-one grid's processes: itself, its Redis and its spare node.

    The node a worker keeps started for its next session belongs to the
    control plane too (WEBGRID_SPARE_NODES).
    """
    found = {GRID_PROCESS: grid}
    for child in grid.children():
        role = grid_role(child)
        if role:
            found[role] = child
    return found


def grid_role(process: psutil.Process) -> str | None:
    try:
        command = " ".join(process.cmdline())
    except psutil.Error:
        return None
    for role, words in GRID_ROLES:
        if all(word in command for word in words):
            return role
    return None
