"""Finding the processes a benchmark run started, to wait for them or warn.

Every process an end starts carries RUN_TAG (and END_TAG, the end's name)
in its environment, and so do most of their children. Chromium's zygote
and the helpers it forks do not: their environment is emptied. So the
tracker also remembers every descendant of a tagged process it has seen,
and a process counts as left over if it is still running later.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import time
import uuid
from collections.abc import Iterable

import psutil

RUN_TAG = "WEBGRID_BENCH_RUN"
END_TAG = "WEBGRID_BENCH_END"
RUN_ID = uuid.uuid4().hex
BROWSER_NAMES = frozenset({"chromium", "chrome", "chrome_crashpad_handler"})
POLL = 0.02


def tags(end: str) -> dict[str, str]:
    """The environment variables that mark a process as `end`'s, in this run."""
    return {RUN_TAG: RUN_ID, END_TAG: end}


def is_alive(process: psutil.Process) -> bool:
    """Running, and not a zombie nobody reaps (init here may not)."""
    try:
        running = bool(process.is_running())
        return running and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def wait_gone(
    processes: Iterable[psutil.Process], timeout: float
) -> list[psutil.Process]:
    """Wait up to `timeout` seconds for `processes` to end; those still alive."""
    deadline = time.monotonic() + timeout
    alive = [p for p in processes if is_alive(p)]
    while alive and time.monotonic() < deadline:
        time.sleep(POLL)
        alive = [p for p in alive if is_alive(p)]
    return alive


def group(pgid: int) -> list[psutil.Process]:
    """The processes whose process group is `pgid`."""
    members = []
    for process in psutil.process_iter():
        with contextlib.suppress(OSError, psutil.Error):
            if os.getpgid(process.pid) == pgid:
                members.append(process)
    return members


def describe(processes: Iterable[psutil.Process]) -> str:
    names = []
    for process in processes:
        with contextlib.suppress(psutil.Error):
            names.append(f"{process.name()} ({process.pid})")
    return ", ".join(sorted(names))


class Tracker:
    """The processes this run has started, as far as they could be seen."""

    def __init__(self) -> None:
        self.seen: set[psutil.Process] = set()

    def scan(self, end: str | None = None) -> set[psutil.Process]:
        """Processes tagged for `end` (any end if None), with descendants."""
        found = {p for p in psutil.process_iter() if _tagged(p, end)}
        for process in list(found):
            with contextlib.suppress(psutil.Error):
                found.update(process.children(recursive=True))
        self.seen.update(found)
        return found

    def browsers(self, end: str) -> list[psutil.Process]:
        """The browser processes that `end` runs now."""
        return [p for p in self.scan(end) if _name(p) in BROWSER_NAMES]

    def leftovers(self, grace: float) -> list[psutil.Process]:
        """What this run started and is still running after `grace` seconds."""
        self.scan()
        return wait_gone(self.seen, grace)


def _tagged(process: psutil.Process, end: str | None) -> bool:
    try:
        environ = process.environ()
    except psutil.Error:
        return False
    if environ.get(RUN_TAG) != RUN_ID:
        return False
    return end is None or environ.get(END_TAG) == end


def _name(process: psutil.Process) -> str:
    try:
        return str(process.name())
    except psutil.Error:
        return ""


def outside_peers(processes: Iterable[psutil.Process]) -> list[str]:
    """Connections of `processes` to anything but loopback, as 'name (pid) -> ip'."""
    found = []
    for process in processes:
        with contextlib.suppress(psutil.Error):
            for connection in process.net_connections(kind="inet"):
                peer = connection.raddr
                if peer and not ipaddress.ip_address(peer.ip).is_loopback:
                    found.append(f"{_name(process)} ({process.pid}) -> {peer.ip}")
    return found
