"""The local provisioner: a node is a child process of the worker.

The node runs `python -m app.node` in a process group of its own, with a
temporary folder that holds everything the session writes. Stopping a node
ends its process group, then every process that still carries the session's
mark in its environment (Chromium's helpers outlive their parent briefly),
then removes the folder.
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
from typing import Any

import psutil

from app import settings
from app.node.config import NODE_SESSION_ENV

log = logging.getLogger(__name__)

STOP_GRACE = 5.0
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
        kill_marked(self.session_id)
        shutil.rmtree(self.tmpdir, ignore_errors=True)

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
        tmp = tempfile.mkdtemp(prefix=f"webgrid-{session_id}-")
        env = {
            **os.environ,
            "REDIS_URL": self.config.redis_url,
            NODE_SESSION_ENV: session_id,
            "WEBGRID_NODE_BROWSER": browser,
            "WEBGRID_NODE_CAPABILITIES": json.dumps(capabilities),
            "WEBGRID_NODE_WORKER": worker,
            "WEBGRID_NODE_PARENT": str(os.getpid()),
            "TMPDIR": tmp,
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


def kill_marked(session_id: str) -> int:
    """Kill every process whose environment names `session_id`; how many."""
    killed = 0
    for process in psutil.process_iter(["pid"]):
        try:
            if process.environ().get(NODE_SESSION_ENV) != session_id:
                continue
            process.kill()
            killed += 1
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    if killed:
        log.info("killed %d process(es) left by session %s", killed, session_id)
    return killed
