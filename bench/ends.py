"""The remote ends a benchmark compares: the grid and a bare chromedriver.

An end is anything with a `name`, a `url` that serves the W3C WebDriver
protocol once `start()` has returned, and a `stop()` that ends all it
started. Adding an end (Selenium Grid 4, say) is one more factory below
that builds a `ProcessEnd` from its command line.
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
from typing import IO, Protocol

from bench import processes

ROOT = pathlib.Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
CHROMEDRIVER = "/usr/bin/chromedriver"
READY_TIMEOUT = 120.0


class EndError(RuntimeError):
    """An end did not start or did not serve; the message names it."""


class End(Protocol):
    name: str
    url: str

    def start(self) -> None: ...

    def stop(self) -> None: ...


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
    ) -> None:
        self.name = name
        self.command = command
        self.url = f"http://127.0.0.1:{port}"
        self.env = dict(os.environ if env is None else env)
        self.stop_timeout = stop_timeout
        self.own_tmpdir = own_tmpdir
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

    def stop(self) -> None:
        """Ask the process to stop (SIGTERM); kill its group if it will not."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(self.stop_timeout)
            except subprocess.TimeoutExpired:
                warning = f"warning: {self.name} ignored SIGTERM; killing it"
                print(warning, file=sys.stderr)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        if self._log is not None:
            self._log.close()
        if self.tmpdir is not None:
            shutil.rmtree(self.tmpdir, ignore_errors=True)

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
    return ProcessEnd("bare", [CHROMEDRIVER, f"--port={port}"], port=port)


def grid() -> ProcessEnd:
    """The all-in-one grid (`python -m app.run`), with its embedded Redis."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env.update(
        WEBGRID_PROXY_PORT=str(port),
        WEBGRID_PROXY_BIND="127.0.0.1",
        WEBGRID_LOG_LEVEL="WARNING",
    )
    command = [sys.executable, "-m", "app.run"]
    # NOTE: app.run stops its children one after the other, each within 20 s.
    # The grid gives each session a temp folder of its own, with a long name:
    # under another folder than /tmp, Chromium's socket path gets too long.
    return ProcessEnd(
        "grid", command, port=port, env=env, stop_timeout=90.0, own_tmpdir=False
    )
