"""The local provisioner: a node is a child process of the worker.

The node runs `python -m app.node` in a process group of its own, with a
temporary folder that holds everything the session writes. Stopping a node
ends its process group, then every process that still carries the session's
Unix session or carries the session's mark in its environment, then
removes the folder.

So that a new session need not wait for Python to start, the worker keeps
spare nodes started (WEBGRID_SPARE_NODES) and hands one the session's
orders; with none ready, or one that cannot take them, the node starts cold.
The spare that replaces it starts once the node says its session has
started (or ends), so that the two do not start at once.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import pathlib
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Sequence
from typing import Any

import psutil

from app import settings
from app.node.config import NODE_SESSION_ENV
from app.node.spare import SPARE_FLAG, STARTED_FD_ENV, encode_orders
from app.patching import in_os_thread

log = logging.getLogger(__name__)

STOP_GRACE = 5.0
# How long a dismissed spare may take to notice the end of its stdin.
SPARE_GRACE = 1.0
BROWSER_PROGRAMS = ("chrom", "firefox", "geckodriver", "crashhelper")
# The folder that holds the `app` package, for the node's import path.
SOURCE_ROOT = str(pathlib.Path(__file__).resolve().parents[2])
NODE_COMMAND = (sys.executable, "-m", "app.node")
SPARE_COMMAND = (*NODE_COMMAND, SPARE_FLAG)


class LocalNode:
    """A running node process and the folder it owns."""

    def __init__(self, session_id: str, process: subprocess.Popen[bytes], tmp: str):
        self.session_id = session_id
        self.process = process
        self.tmpdir = tmp

    def wait(self, timeout: float) -> int | None:
        """The node's exit code, or None if it still runs after `timeout`."""
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, grace: float = STOP_GRACE) -> None:
        """Stop the node (asking first), every process it left, its folder."""
        if self.process.poll() is None:
            self._signal_group(signal.SIGTERM)
            if self.wait(grace) is None:
                log.warning("node %s ignored SIGTERM; killing it", self.session_id)
        self._signal_group(signal.SIGKILL)
        self.process.wait()
        kill_session(self.session_id, self.process.pid)
        # The folder goes in the background: the slot is free without it.
        threading.Thread(
            target=in_os_thread,
            args=(shutil.rmtree, self.tmpdir, True),
            name="rm tmpdir",
        ).start()

    def _signal_group(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signum)


class LocalProvisioner:
    """Starts nodes as local processes, in a spare one when there is one."""

    def __init__(
        self, config: settings.Settings, *, spares: SparePool | None = None
    ) -> None:
        self.config = config
        self.spares = spares or SparePool(config.spare_nodes, config.redis_url)
        self.spares.refill()

    def start(
        self,
        session_id: str,
        browser: str,
        capabilities: dict[str, Any],
        worker: str,
    ) -> LocalNode:
        # NOTE: short, since Chromium's socket paths under it must stay
        # below the 108 bytes a unix socket path may have.
        tmp = tempfile.mkdtemp(prefix=folder_prefix(session_id))
        orders = {
            "REDIS_URL": self.config.redis_url,
            NODE_SESSION_ENV: session_id,
            "WEBGRID_NODE_BROWSER": browser,
            "WEBGRID_NODE_CAPABILITIES": json.dumps(capabilities),
            "WEBGRID_NODE_WORKER": worker,
            "WEBGRID_NODE_PARENT": str(os.getpid()),
            "TMPDIR": tmp,
            "WEBGRID_NODE_TMPDIR": tmp,
        }
        try:
            process = self._order_spare(session_id, orders) or self._start_cold(orders)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
            self.spares.refill()
            raise
        log.debug("node %s started as process %d", session_id, process.pid)
        return LocalNode(session_id, process, tmp)

    def close(self) -> None:
        """Stop the spare nodes; started nodes are their tasks' to stop."""
        self.spares.close()

    def _order_spare(
        self, session_id: str, orders: dict[str, str]
    ) -> subprocess.Popen[bytes] | None:
        """The spare that took `orders`, or None to start the node cold."""
        spare = self.spares.take()
        if spare is None:
            return None
        assert spare.process.stdin is not None
        try:
            spare.process.stdin.write(encode_orders(orders))
            spare.process.stdin.close()
        except OSError as exc:
            log.warning(
                "spare node %d took no orders (%s); session %s starts cold",
                spare.process.pid,
                exc,
                session_id,
            )
            spare.dismiss()
            return None
        self.spares.refill_once_started(spare.started)
        return spare.process

    def _start_cold(self, orders: dict[str, str]) -> subprocess.Popen[bytes]:
        env = {**_node_environ(), **orders}
        process, started = _spawn(
            NODE_COMMAND, env, orders["TMPDIR"], subprocess.DEVNULL
        )
        self.spares.refill_once_started(started)
        return process


class Spare:
    """A spare node process, and the pipe it closes once its session started."""

    def __init__(self, process: subprocess.Popen[bytes], started: int) -> None:
        self.process = process
        self.started = started

    def dismiss(self) -> None:
        """Stop it: end its stdin, which it exits on, and reap it."""
        os.close(self.started)
        with contextlib.suppress(OSError):
            if self.process.stdin is not None:
                self.process.stdin.close()
        try:
            self.process.wait(SPARE_GRACE)
        except subprocess.TimeoutExpired:
            # It is still importing, not yet reading; it holds nothing to lose.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


class SparePool:
    """Node processes started ahead of their sessions, awaiting orders.

    A spare leads a Unix session of its own from birth, as a cold node
    does, holds no slot and no Redis key, and exits when its stdin ends.
    """

    def __init__(
        self, size: int, redis_url: str, command: Sequence[str] = SPARE_COMMAND
    ) -> None:
        self.size = size
        self.redis_url = redis_url
        self.command = tuple(command)
        self._idle: list[Spare] = []
        self._starters: list[threading.Thread] = []
        self._closed = False
        self._lock = threading.Lock()

    def take(self) -> Spare | None:
        """A live spare, or None; spares that died meanwhile are reaped."""
        with self._lock:
            self._drop_dead()
            return self._idle.pop(0) if self._idle else None

    def ready(self) -> int:
        """How many spares are started and not yet taken."""
        with self._lock:
            return len(self._idle)

    def refill(self) -> None:
        """Start, in the background, the spares missing to make `size`."""
        with self._lock:
            self._starters = [t for t in self._starters if t.is_alive()]
            missing = self.size - len(self._idle) - len(self._starters)
            if self._closed or missing <= 0:
                return
            starters = [
                threading.Thread(target=self._start_one, name="spare node")
                for _ in range(missing)
            ]
            self._starters += starters
        for starter in starters:
            starter.start()

    def refill_once_started(self, started: int) -> None:
        """Refill once a node has closed its end of the `started` pipe."""
        # NOTE: a spare's Python start costs about half a CPU-second; begun
        # at once, it would slow the browser the node is starting.
        threading.Thread(
            target=self._refill_at_end_of,
            args=(started,),
            name="spare refill",
            daemon=True,
        ).start()

    def _refill_at_end_of(self, started: int) -> None:
        try:
            # NOTE: select() first, since a worker on gevent's pool patches
            # it to wait without blocking the hub; os.read() it does not.
            while select.select([started], [], [])[0] and os.read(started, 64):
                pass
        finally:
            os.close(started)
        self.refill()

    def close(self) -> None:
        """Stop every spare and wait for those still starting."""
        with self._lock:
            self._closed = True
            starters = list(self._starters)
        for starter in starters:
            starter.join()
        with self._lock:
            idle, self._idle = self._idle, []
        for spare in idle:
            spare.dismiss()

    def _start_one(self) -> None:
        env = {**_node_environ(), "REDIS_URL": self.redis_url}
        try:
            # NOTE: `-m` puts the working folder on the import path; the
            # source folder adds nothing there that PYTHONPATH does not.
            process, started = _spawn(self.command, env, SOURCE_ROOT, subprocess.PIPE)
        except OSError:
            log.warning("could not start a spare node; nodes start cold", exc_info=True)
            return
        log.debug("spare node started as process %d", process.pid)
        self._keep(Spare(process, started))

    def _keep(self, spare: Spare) -> None:
        with self._lock:
            if not self._closed:
                self._idle.append(spare)
                return
        spare.dismiss()

    def _drop_dead(self) -> None:
        for spare in [s for s in self._idle if s.process.poll() is not None]:
            log.warning(
                "spare node %d had exited with code %s; a new one starts",
                spare.process.pid,
                spare.process.returncode,
            )
            os.close(spare.started)
            self._idle.remove(spare)


def folder_prefix(session_id: str) -> str:
    """How the name of a session's temporary folder begins."""
    return f"wg-{session_id[:8]}-"


def _spawn(
    command: Sequence[str], env: dict[str, str], cwd: str, stdin: int
) -> tuple[subprocess.Popen[bytes], int]:
    """Start a node in a Unix session of its own; return it with the read
    end of the pipe it closes once its session has started."""
    started, signal_end = os.pipe()
    try:
        process = subprocess.Popen(
            command,
            env={**env, STARTED_FD_ENV: str(signal_end)},
            cwd=cwd,
            stdin=stdin,
            start_new_session=True,
            pass_fds=(signal_end,),
        )
    except OSError:
        os.close(started)
        raise
    finally:
        os.close(signal_end)
    return process, started


def _node_environ() -> dict[str, str]:
    """The worker's environment, with the `app` package importable."""
    path = os.pathsep.join(filter(None, [SOURCE_ROOT, os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path}


def kill_session(session_id: str, leader: int) -> int:
    """Kill every process a node left; return how many.

    Most stay in the node's Unix session (Chromium's helpers outlive the
    browser briefly); a crash handler that leaves it still carries the
    session's mark in its environment.
    """
    killed = 0
    for process in in_os_thread(_left_over, session_id, leader):
        try:
            process.kill()
            killed += 1
        except psutil.Error:
            continue
    if killed:
        log.info("killed %d process(es) left by session %s", killed, session_id)
    return killed


def _left_over(session_id: str, leader: int) -> list[psutil.Process]:
    """The live processes a node left (a scan of every process)."""
    found = []
    for process in psutil.process_iter(["pid", "name"]):
        try:
            if _left_by(process, session_id, leader):
                found.append(process)
        except (OSError, psutil.Error):
            continue
    return found


def _left_by(process: psutil.Process, session_id: str, leader: int) -> bool:
    if os.getsid(process.pid) == leader:
        return True
    # Reading an environment costs more: only for the browsers' own programs.
    if not str(process.info["name"]).startswith(BROWSER_PROGRAMS):
        return False
    return bool(process.environ().get(NODE_SESSION_ENV) == session_id)
