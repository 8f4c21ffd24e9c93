"""The manager: answers `POST /session` and `GET /status` behind the proxy.

A new session is validated and matched against what live workers offer,
recorded as queued, and handed to the workers that offer its browser as a
`provision_node` task. The manager then waits for the node's answer, the
queue timeout or the start's failure, and answers the client in W3C form.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

import redis
from celery import Celery
from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException

from app import capabilities, registry, settings
from app.errors import (
    InvalidArgument,
    SessionNotCreated,
    UnknownCommand,
    UnknownError,
    UnknownMethod,
    WebDriverError,
    from_code,
)
from app.http.wsgi import client_gone
from app.orchestrator import queue_for

log = logging.getLogger(__name__)

WAIT_STEP = 1.0


def create_app(config: settings.Settings, client: redis.Redis, tasks: Celery) -> Flask:
    """The manager's Flask app, talking to Redis through `client`."""
    flask_app = Flask("webgrid.manager")
    flask_app.json.sort_keys = False  # type: ignore[attr-defined]
    manager = Manager(config, client, tasks)

    @flask_app.post("/session")
    def new_session() -> Response:
        sock = request.environ.get("webgrid.socket")
        answer = manager.new_session(_json_body(), lambda: client_gone(sock))
        return _json(200, {"value": answer})

    @flask_app.get("/status")
    def status() -> Response:
        return _json(200, {"value": manager.status()})

    @flask_app.errorhandler(WebDriverError)
    def webdriver_error(error: WebDriverError) -> Response:
        return Response(error.to_bytes(), error.status, content_type=JSON_TYPE)

    @flask_app.errorhandler(Exception)
    def unexpected(error: Exception) -> Response:
        if isinstance(error, HTTPException):
            return webdriver_error(_from_http(error))
        log.exception("manager failed on %s %s", request.method, request.path)
        return webdriver_error(UnknownError(f"the manager failed: {error!r}"))

    return flask_app


JSON_TYPE = "application/json; charset=utf-8"


def _from_http(error: HTTPException) -> WebDriverError:
    if error.code == 405:
        return UnknownMethod(f"{request.method} is not allowed on {request.path}")
    if error.code == 404:
        return UnknownCommand(f"no such command: {request.path}")
    return InvalidArgument(f"{error.name}: {error.description}")


def _json(status: int, payload: dict[str, Any]) -> Response:
    return Response(json.dumps(payload), status, content_type=JSON_TYPE)


def _json_body() -> Any:
    raw = request.get_data(cache=False)
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise InvalidArgument(f"the request body is not valid JSON: {exc}") from None


class Manager:
    """New sessions and the grid's status, over Redis and Celery."""

    def __init__(
        self, config: settings.Settings, client: redis.Redis, tasks: Celery
    ) -> None:
        self.config = config
        self.client = client
        self.tasks = tasks

    def new_session(
        self, body: Any, client_gone: Callable[[], bool] = lambda: False
    ) -> dict[str, Any]:
        """Start a session for `body`; give it up if `client_gone()` turns true."""
        candidates = capabilities.process(body)
        workers = registry.live_workers(self.client)
        caps, offer = capabilities.match(candidates, registry.offers_of(workers))
        options = capabilities.grid_options(caps)

        session_id = str(uuid.uuid4())
        browser = offer.browser_name
        registry.create_session(
            self.client, session_id, browser, caps, options.metadata
        )
        self.tasks.send_task(
            "provision_node",
            args=[session_id, browser, caps],
            queue=queue_for(browser),
        )
        answer = self._wait(session_id, client_gone)
        return {"sessionId": session_id, "capabilities": answer["capabilities"]}

    def _wait(self, session_id: str, client_gone: Callable[[], bool]) -> dict[str, Any]:
        """The node's answer; raise `SessionNotCreated` on a failure or timeout."""
        queued_since = time.monotonic()
        while True:
            result = registry.wait_result(self.client, session_id, WAIT_STEP)
            if client_gone():
                self._abandon(session_id, "its client went away")
            if result is not None:
                return self._accept(session_id, result)
            waited = time.monotonic() - queued_since
            if waited > self.config.queue_timeout and self._give_up(session_id, waited):
                raise SessionNotCreated(
                    f"waited {waited:.0f} s for a free slot "
                    f"(WEBGRID_QUEUE_TIMEOUT={self.config.queue_timeout:g}); every "
                    "slot offering this browser stayed busy",
                    session_id=session_id,
                )
            if waited > self._hard_limit():
                self._abandon(session_id, "its worker never reported on the start")

    def _accept(self, session_id: str, result: dict[str, Any]) -> dict[str, Any]:
        if result.get("ok"):
            log.info("session %s is running; answering its client", session_id)
            return result
        error = from_code(result.get("error", ""), result.get("message", ""))
        raise SessionNotCreated(error.message, session_id=session_id)

    def _give_up(self, session_id: str, waited: float) -> bool:
        """Withdraw a request still queued; False once a worker has it."""
        return registry.transition(
            self.client,
            session_id,
            registry.TERMINATED,
            allowed=(registry.QUEUED,),
            keep=self.config.session_retention,
            reason=f"waited {waited:.0f} s in the queue",
        )

    def _hard_limit(self) -> float:
        return self.config.queue_timeout + self.config.startup_timeout + 30

    def _abandon(self, session_id: str, reason: str) -> None:
        """End the session, whatever its state, and fail the request."""
        registry.terminate(
            self.client, session_id, reason, retention=self.config.session_retention
        )
        raise SessionNotCreated(
            f"the session could not be started: {reason}", session_id=session_id
        )

    def status(self) -> dict[str, Any]:
        workers = registry.live_workers(self.client)
        # Only a worker that takes sessions, and offers a browser, can start one.
        taking = [w for w in workers if not w.get("draining") and w.get("browsers")]
        total = sum(int(w["slots"]) for w in taking)
        used = sum(int(w["used"]) for w in taking)
        ready = total - used > 0
        return {
            "ready": ready,
            "message": _status_message(workers, taking, total, used),
            "slots": {"total": total, "used": used, "free": max(total - used, 0)},
            "sessions": sum(len(w.get("sessions", [])) for w in workers),
            "workers": workers,
        }


def _status_message(
    workers: list[dict[str, Any]], taking: list[dict[str, Any]], total: int, used: int
) -> str:
    if not [w for w in workers if not w.get("draining")]:
        return (
            "no worker is alive to take sessions; start one with 'celery -A app worker'"
        )
    if not taking:
        return (
            "no live worker offers a browser: each says why in its log "
            "(WEBGRID_BROWSERS, WEBGRID_CHROME_BINARY, WEBGRID_FIREFOX_BINARY)"
        )
    if used >= total:
        return f"all {total} slots are busy; new sessions wait in the queue"
    return f"ready: {total - used} of {total} slots free"
