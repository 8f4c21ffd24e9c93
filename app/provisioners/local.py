"""The local provisioner: a node is a child process of the worker.

The node runs `python -m app.node` in a process group of its own, with a
temporary folder that holds everything the session writes. Stopping a node
ends its process group, then every process that still carries the session's
Unix session or carries the session's mark in its environment, then
removes the folder.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from typing import Any

import psutil

from app import settings
from app.node.config import NODE_SESSION_ENV

log = logging.getLogger(__name__)

STOP_GRACE = 5.0
BROWSER_PROGRAMS = ("chrom", "firefox", "geckodriver", "crashhelper")
# The folder that holds the `app` package, for the node's import path.
SOURCE_ROOT = str(pathlib.Path(__file__).resolve().parents[2])


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
            target=shutil.rmtree, args=(self.tmpdir, True), name="rm tmpdir"
        ).start()

    def _signal_group(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signum)


class LocalProvisioner:
    """Starts nodes as local processes."""

    def __init__(self, config: settings.Settings) -> None:
        self.config = config

    def start(
        self,
        session_id: str,
        browser: str,
        capabilities: dict[str, Any],
        worker: str,
    ) -> LocalNode:
        # NOTE: short, since Chromium's socket paths under it must stay
        # below the 108 bytes a unix socket path may have.
        tmp = tempfile.mkdtemp(prefix=f"wg-{session_id[:8]}-")
        env = {
            **os.environ,
            "REDIS_URL": self.config.redis_url,
            NODE_SESSION_ENV: session_id,
            "WEBGRID_NODE_BROWSER": browser,
            "WEBGRID_NODE_CAPABILITIES": json.dumps(capabilities),
            "WEBGRID_NODE_WORKER": worker,
            "WEBGRID_NODE_PARENT": str(os.getpid()),
            "TMPDIR": tmp,
            "WEBGRID_NODE_TMPDIR": tmp,
            "PYTHONPATH": os.pathsep.join(
                filter(None, [SOURCE_ROOT, os.environ.get("PYTHONPATH")])
            ),
        }
        try:
            process = subprocess.Popen(
                [sys.executable, "-m", "app.node"],
                env=env,
                cwd=tmp,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        log.debug("node %s started as process %d", session_id, process.pid)
        return LocalNode(session_id, process, tmp)


def kill_session(session_id: str, leader: int) -> int:
    """Kill every process a node left; return how many.

    Most stay in the node's Unix session (Chromium's helpers outlive the
    browser briefly); a crash handler that leaves it still carries the
    session's mark in its environment.
    """
    killed = 0
    for process in psutil.process_iter(["pid", "name"]):
        try:
            if _left_by(process, session_id, leader):
                process.kill()
                killed += 1
        except (OSError, psutil.Error):
            continue
    if killed:
        log.info("killed %d process(es) left by session %s", killed, session_id)
    return killed


def _left_by(process: psutil.Process, session_id: str, leader: int) -> bool:
    if os.getsid(process.pid) == leader:
        return True
    # Reading an environment costs more: only for the browsers' own programs.
    if not str(process.info["name"]).startswith(BROWSER_PROGRAMS):
        return False
    return bool(process.environ().get(NODE_SESSION_ENV) == session_id)
