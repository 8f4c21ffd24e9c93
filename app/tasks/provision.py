"""`provision_node`: one slot's whole life, from a queued session to cleanup.

The task claims the session (queued -> provisioning), starts its node
through the provisioner, waits while the node starts and serves, and stops
it when it ends or misbehaves. The slot is held exactly as long as the task
runs, so Celery's own `inspect active` lists one task per live session.
"""

from __future__ import annotations

import logging
import platform
import time
from typing import Any

import redis

from app import registry
from app.errors import SessionNotCreated
from app.orchestrator import Orchestrator, celery, current, queue_for
from app.provisioners import Node
from app.provisioners.local import LocalNode

log = logging.getLogger(__name__)

# How long a node may take beyond the startup timeout to report on its own.
STARTUP_GRACE = 5.0
# How long a node whose record has ended may take to stop by itself.
STOP_GRACE = 5.0
POLL = 0.5


@celery.task(name="provision_node", acks_late=True, ignore_result=True)
def provision_node(session_id: str, browser: str, capabilities: dict[str, Any]) -> str:
    """Run the node of `session_id`; return how the slot's life ended."""
    orchestrator = current()
    if orchestrator.draining:
        # NOTE: a worker told to stop may still receive requests until its
        # running sessions end. Each goes back to the queue as a new
        # message, where a worker that waits longer gets it first (Redis
        # serves blocked consumers in order); a rejected one would stay
        # with this worker until it exits.
        provision_node.apply_async(
            args=[session_id, browser, capabilities], queue=queue_for(browser)
        )
        log.info("session %s handed back to the queue: draining", session_id)
        return "handed back"
    claimed = registry.transition(
        orchestrator.client,
        session_id,
        registry.PROVISIONING,
        allowed=(registry.QUEUED,),
        worker=orchestrator.name,
    )
    if not claimed:
        log.info("session %s is no longer queued; request dropped", session_id)
        return "dropped"
    with orchestrator.slot(session_id):
        return _run_node(orchestrator, session_id, browser, capabilities)


def _run_node(
    orchestrator: Orchestrator,
    session_id: str,
    browser: str,
    capabilities: dict[str, Any],
) -> str:
    provisioner = orchestrator.provisioner
    try:
        node = provisioner.start(session_id, browser, capabilities, orchestrator.name)
    except OSError as exc:
        _end(orchestrator, session_id, f"could not start a node process: {exc}")
        return "failed"
    except SessionNotCreated as exc:
        _end(orchestrator, session_id, exc.message)
        return "failed"

    if isinstance(node, LocalNode):
        # What the reaper needs should worker and node both die.
        orchestrator.client.hset(
            registry.session_key(session_id),
            mapping={
                "node_pid": node.process.pid,
                "node_host": platform.node(),
                "node_tmpdir": node.tmpdir,
            },
        )

    def stop_for_worker(reason: str) -> None:
        _end(orchestrator, session_id, reason)
        node.stop()

    orchestrator.on_stop(session_id, stop_for_worker)
    try:
        return _supervise(orchestrator, session_id, node)
    finally:
        # A session still live here was cut short: its reason goes first,
        # before the node, stopped, gives one of its own.
        _end(orchestrator, session_id, "its node ended without saying why")
        node.stop()


def _supervise(orchestrator: Orchestrator, session_id: str, node: Node) -> str:
    """Wait for the node to end; stop it if it overstays its start or its
    session was ended by the grid (the client went away, for example)."""
    config = orchestrator.config
    start_deadline = time.monotonic() + config.startup_timeout + STARTUP_GRACE
    ended_at: float | None = None
    while True:
        code = node.wait(POLL)
        if code is not None:
            if code != 0:
                _end(orchestrator, session_id, f"its node exited with code {code}")
            return "ended"
        state = _state(orchestrator, session_id)
        if state == registry.PROVISIONING and time.monotonic() > start_deadline:
            _end(
                orchestrator,
                session_id,
                f"the node was not ready within {config.startup_timeout:g} s "
                "(WEBGRID_STARTUP_TIMEOUT)",
            )
            return "timed out"
        if state == registry.TERMINATED:
            # A running node ends itself when its record ends; one that is
            # still starting, or does not within its grace, is stopped here.
            ended_at = ended_at or time.monotonic()
            if not _was_running(orchestrator, session_id) or (
                time.monotonic() - ended_at > STOP_GRACE
            ):
                return "withdrawn"


def _state(orchestrator: Orchestrator, session_id: str) -> str | None:
    """The record's state; None when Redis does not answer or has lost it
    (a restarted Redis): then the node goes on as it is."""
    try:
        state = orchestrator.client.hget(registry.session_key(session_id), "state")
    except redis.RedisError:
        return None
    return str(state) if state is not None else None


def _was_running(orchestrator: Orchestrator, session_id: str) -> bool:
    try:
        running_at = orchestrator.client.hget(
            registry.session_key(session_id), "running_at"
        )
    except redis.RedisError:
        return True
    return running_at is not None


def _end(orchestrator: Orchestrator, session_id: str, reason: str) -> None:
    """Terminate a live record and wake a manager that may still wait.

    Without Redis, it logs that and returns, so that its caller can go on to
    stop the node: a worker stops its nodes whether Redis answers or not.
    """
    client = orchestrator.client
    retention = orchestrator.config.session_retention
    try:
        if registry.terminate(client, session_id, reason, retention=retention):
            registry.post_result(
                client,
                session_id,
                {"ok": False, "error": "session not created", "message": reason},
            )
    except redis.RedisError as exc:
        log.warning(
            "could not record that session %s ended (%s): %s", session_id, reason, exc
        )
