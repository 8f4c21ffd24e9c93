"""The reaper: ends what dead components left behind.

Every worker runs it when it starts and then periodically; running it twice
at once is harmless, since a record only ends once. It ends the records of
sessions whose worker is gone (and whose node no longer heartbeats), and of
requests left queued by a manager that died, and kills node processes on
this host whose worker process is gone. The temporary folder of a local
node whose worker and node both died goes with its record, when the folder
is on this host.
"""

from __future__ import annotations

import logging
import os
import pathlib
import platform
import shutil
import signal
import threading
import time

import psutil
import redis

from app import registry, settings
from app.node.config import NODE_SESSION_ENV
from app.patching import in_os_thread
from app.provisioners.local import folder_prefix

log = logging.getLogger(__name__)


# How long past its queue and startup timeouts a queued record may stay.
QUEUE_SLACK = 60.0


def reap(client: redis.Redis, config: settings.Settings) -> list[str]:
    """End the records dead components left; return their session ids."""
    ended = []
    for session_id in registry.live_sessions(client):
        record = registry.session(client, session_id)
        reason = _reason_to_end(client, config, session_id, record)
        if not reason:
            continue
        # The folder first: once the record says terminated, nothing is left.
        _remove_folder(session_id, record)
        if registry.terminate(
            client, session_id, reason, retention=config.session_retention
        ):
            log.warning("reaped session %s: %s", session_id, reason)
            ended.append(session_id)
    return ended


def _remove_folder(session_id: str, record: dict[str, str]) -> None:
    """Remove the folder a dead local node left, if it is on this host and
    named as the local provisioner names a session's folder."""
    folder = pathlib.Path(record.get("node_tmpdir", ""))
    if record.get("node_host") != platform.node() or not folder.name.startswith(
        folder_prefix(session_id)
    ):
        return
    if folder.is_dir():
        in_os_thread(shutil.rmtree, folder, True)
        log.warning("removed %s, the folder session %s left", folder, session_id)


def _reason_to_end(
    client: redis.Redis,
    config: settings.Settings,
    session_id: str,
    record: dict[str, str],
) -> str:
    if not record:
        # The record expired or Redis lost it: only the index entry is left.
        client.srem(registry.LIVE_KEY, session_id)
        return ""
    state = record.get("state")
    if state == registry.QUEUED:
        waited = time.time() - float(record.get("queued_at", 0))
        limit = config.queue_timeout + config.startup_timeout + QUEUE_SLACK
        return "left in the queue by a manager that died" if waited > limit else ""
    worker = record.get("worker", "")
    if client.exists(registry.worker_key(worker)) or registry.route(client, session_id):
        return ""
    return f"its worker {worker} died"


def reap_orphan_nodes(redis_url: str) -> int:
    """Kill node processes of this grid on this host whose worker is gone."""
    killed = 0
    for group in in_os_thread(_orphan_node_groups, redis_url):
        try:
            os.killpg(group, signal.SIGKILL)
            killed += 1
        except OSError:
            continue
    if killed:
        log.warning("killed %d node process group(s) of dead workers", killed)
    return killed


def _orphan_node_groups(redis_url: str) -> list[int]:
    """Process groups of nodes of this grid whose worker is gone (a scan of
    every process)."""
    groups = []
    for process in psutil.process_iter(["pid", "name"]):
        try:
            env = process.environ()
            if not env.get(NODE_SESSION_ENV) or env.get("REDIS_URL") != redis_url:
                continue
            parent = int(env.get("WEBGRID_NODE_PARENT", "0") or 0)
            if parent and not psutil.pid_exists(parent):
                groups.append(os.getpgid(process.pid))
        except (OSError, ValueError, psutil.Error):
            continue
    return groups


class Reaper:
    """Runs the reaper now and every ten heartbeats in a thread."""

    def __init__(self, client: redis.Redis, config: settings.Settings) -> None:
        self.client = client
        self.config = config
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="reaper", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()

    def run_once(self) -> None:
        try:
            reap(self.client, self.config)
        except redis.RedisError as exc:
            log.warning("reaper could not read Redis: %s", exc)
        reap_orphan_nodes(self.config.redis_url)
        if self.config.provisioner == "docker":
            from app.provisioners import docker

            docker.reap(self.config)

    def _run(self) -> None:
        self.run_once()
        while not self._stopped.wait(self.config.heartbeat_interval * 10):
            self.run_once()
