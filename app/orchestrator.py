"""The orchestrator: a Celery worker that owns slots and starts nodes.

The Celery app lives here. When a worker starts, it advertises in Redis,
under a heartbeat, the browsers it offers and its slots free and used; each
running `provision_node` task holds one slot through `Orchestrator.slot()`.
When the worker shuts down it stops every node it still runs, then
closes its provisioner (which stops the spare nodes of a local one).
"""

from __future__ import annotations

import contextlib
import json
import logging
import platform
import re
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

import redis
from celery import Celery, signals
from celery.platforms import EX_OK
from celery.worker import state as worker_state

from app import logs, provisioners, registry, settings
from app.errors import SessionNotCreated
from app.patching import in_background
from app.reaper import Reaper

log = logging.getLogger(__name__)

celery = Celery("webgrid")
celery.config_from_object("celeryconfig")

QUEUE_PREFIX = "webgrid."


def queue_for(browser: str) -> str:
    """The Celery queue that workers offering `browser` consume."""
    return QUEUE_PREFIX + browser


def browser_binary(config: settings.Settings, browser: str) -> str:
    if browser == "firefox":
        return config.firefox_binary
    return config.chrome_binary


def detect_version(binary: str) -> str:
    """The browser's version as it reports it, for example '156.0.8078.114'."""
    try:
        out = subprocess.run(
            [binary, "--version"], capture_output=True, text=True, timeout=30
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ""
    found = re.search(r"\d+(\.\d+)+", out)
    return found.group(0) if found else ""


class Orchestrator:
    """The state of one worker process: its offer and the slots in use."""

    def __init__(self, name: str, config: settings.Settings) -> None:
        self.name = name
        self.config = config
        self.client = registry.connect(config.redis_url)
        self.provisioner = provisioners.make(config)
        self.browsers = self._detect_browsers()
        self._held: dict[str, float] = {}
        self._lock = threading.Lock()
        self._stoppers: dict[str, Callable[[str], None]] = {}
        self._stopped_for: str | None = None
        self.draining = False
        self.reaper = Reaper(self.client, config)
        self.heartbeat = registry.Heartbeat(
            self.client,
            registry.worker_key(name),
            self.offer_json,
            interval=config.heartbeat_interval,
            ttl=config.heartbeat_ttl,
        )

    def _detect_browsers(self) -> list[dict[str, str]]:
        if self.config.provisioner == "docker":
            return self._detect_in_images()
        offered = []
        for browser in self.config.browsers:
            binary = browser_binary(self.config, browser)
            version = detect_version(binary)
            if not version:
                log.warning(
                    "browser %s not offered: %s does not run; install it or set "
                    "its path (WEBGRID_CHROME_BINARY / WEBGRID_FIREFOX_BINARY)",
                    browser,
                    binary,
                )
                continue
            offered.append(
                {
                    "browserName": browser,
                    "browserVersion": version,
                    "platformName": platform.system().lower(),
                }
            )
        return offered

    def _detect_in_images(self) -> list[dict[str, str]]:
        """What this worker's node images hold; nothing if Docker is down."""
        from app.provisioners.docker import DockerProvisioner

        assert isinstance(self.provisioner, DockerProvisioner)
        try:
            return self.provisioner.offer(self.config.browsers)
        except SessionNotCreated as exc:
            log.warning("worker %s offers nothing: %s", self.name, exc.message)
            return []

    def offer(self) -> dict[str, Any]:
        with self._lock:
            sessions = sorted(self._held)
        return {
            "name": self.name,
            "host": self.config.host,
            "browsers": self.browsers,
            "slots": self.config.slots,
            "used": len(sessions),
            "sessions": sessions,
            "draining": self.draining,
        }

    def offer_json(self) -> str:
        return json.dumps(self.offer())

    @contextlib.contextmanager
    def slot(self, session_id: str) -> Iterator[None]:
        """Hold one slot for `session_id` and publish the change at once."""
        with self._lock:
            self._held[session_id] = time.time()
        self.heartbeat.beat()
        try:
            yield
        finally:
            with self._lock:
                self._held.pop(session_id, None)
                self._stoppers.pop(session_id, None)
            self.heartbeat.beat()

    def on_stop(self, session_id: str, stopper: Callable[[str], None]) -> None:
        """Register how to stop `session_id`'s node when the worker ends; if
        its nodes are being stopped already, stop this one now."""
        with self._lock:
            reason = self._stopped_for
            if reason is None:
                self._stoppers[session_id] = stopper
                return
        stopper(reason)

    def stop_all(self, reason: str) -> None:
        """Stop every node of this worker, side by side, and wait for them;
        a node whose start ends later is stopped as soon as it registers."""
        with self._lock:
            self._stopped_for = self._stopped_for or reason
            stoppers = list(self._stoppers.values())
        threads = [threading.Thread(target=stop, args=(reason,)) for stop in stoppers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def _take_no_more(self) -> None:
        """Hand back requests from now on, and say so in the offer at once."""
        self.draining = True
        self.heartbeat.beat()

    def stop_now(self, reason: str) -> None:
        """Take no new session, and stop every node now."""
        self._take_no_more()
        log.info("worker %s stops its sessions at once", self.name)
        self.stop_all(reason)

    def drain(self) -> None:
        """Let running sessions end, stopping them after the drain timeout."""
        timeout = self.config.drain_timeout
        self._take_no_more()
        with self._lock:
            running = len(self._held)
        log.info(
            "worker %s takes no new session; %d running get %g s to end "
            "(WEBGRID_DRAIN_TIMEOUT)",
            self.name,
            running,
            timeout,
        )
        reason = f"its worker shut down and the {timeout:g} s drain ran out"
        timer = threading.Timer(timeout, self.stop_all, args=(reason,))
        timer.daemon = True
        timer.start()


_current: Orchestrator | None = None


def current() -> Orchestrator:
    """The orchestrator of this worker process."""
    if _current is None:
        raise RuntimeError("provision_node runs only inside a started worker")
    return _current


@signals.setup_logging.connect
def _setup_logging(**_: Any) -> None:
    logs.setup(settings.get().log_level)


@signals.celeryd_init.connect
def _on_worker_init(sender: str | None = None, **_: Any) -> None:
    global _current
    name = sender or f"celery@{socket.gethostname()}"
    _current = Orchestrator(name, settings.get())


@signals.worker_ready.connect
def _on_worker_ready(**_: Any) -> None:
    orchestrator = current()
    try:
        orchestrator.heartbeat.start()
        orchestrator.reaper.start()
    except redis.RedisError:
        log.exception("could not advertise worker %s in Redis", orchestrator.name)
        raise
    _stop_at_once_on(orchestrator, signal.SIGQUIT, signal.SIGINT)
    offered = ", ".join(
        f"{b['browserName']} {b['browserVersion']}" for b in orchestrator.browsers
    )
    log.info(
        "worker %s ready with %d slots offering %s",
        orchestrator.name,
        orchestrator.config.slots,
        offered or "nothing",
    )


@signals.worker_shutting_down.connect
def _on_worker_shutting_down(how: str = "", **_: Any) -> None:
    """Celery's warm shutdown (SIGTERM): let the sessions drain."""
    if _current is not None and how == "Warm":
        in_background(_current.drain)


STOPPED_AT_ONCE = "its worker was stopped at once"


def _stop_at_once_on(orchestrator: Orchestrator, *signums: int) -> None:
    """Make each of `signums` stop every session at once, then the worker.

    NOTE: Celery's own cold shutdown (its SIGQUIT and SIGINT) first cancels
    the running tasks, which its thread pool cannot do, and which its gevent
    pool tries in gevent's loop, where nothing may wait; either way it fails
    before the nodes are stopped, and the worker waits on them for ever.
    """

    def stop_at_once(signum: int, _: FrameType | None) -> None:
        # The nodes are stopped for certain at worker_shutdown too.
        in_background(lambda: orchestrator.stop_now(STOPPED_AT_ONCE))
        worker_state.should_stop = EX_OK

    for signum in signums:
        signal.signal(signum, stop_at_once)


@signals.worker_shutdown.connect
def _on_worker_shutdown(**_: Any) -> None:
    if _current is None:
        return
    _current.stop_all("worker shut down")
    _current.reaper.stop()
    _current.heartbeat.stop()
    _current.provisioner.close()
