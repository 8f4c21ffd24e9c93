"""The grid's state in Redis: the key schema, heartbeats and session records.

Every key the grid writes is built here:

    webgrid:worker:<name>          JSON offer of a live worker (heartbeat, TTL)
    webgrid:manager:<id>           "host:port" of a live manager (heartbeat, TTL)
    webgrid:route:<session>        "host:port" of the node serving it (heartbeat)
    webgrid:session:<session>      hash: the session record (state, times, ...)
    webgrid:session:<session>:result   list: the node's answer for the manager
    webgrid:sessions:live          set: ids of the sessions not yet terminated

A session moves queued -> provisioning -> running -> terminated; it may
also go straight from queued or provisioning to terminated. The record is
kept for `session_retention` seconds after it ends.
"""

from __future__ import annotations

import json
import logging
import pathlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import redis

from app.capabilities import Offer

log = logging.getLogger(__name__)

PREFIX = "webgrid:"
WORKER_PREFIX = PREFIX + "worker:"
MANAGER_PREFIX = PREFIX + "manager:"
ROUTE_PREFIX = PREFIX + "route:"
SESSION_PREFIX = PREFIX + "session:"
DIRECT_PREFIX = PREFIX + "direct:"
TOUCH_PREFIX = PREFIX + "touch:"
LIVE_KEY = PREFIX + "sessions:live"

QUEUED = "queued"
PROVISIONING = "provisioning"
RUNNING = "running"
TERMINATED = "terminated"
LIVE_STATES = (QUEUED, PROVISIONING, RUNNING)

RESULT_TTL = 600

_TRANSITION_LUA = (pathlib.Path(__file__).parent / "lua" / "transition.lua").read_text()


def worker_key(name: str) -> str:
    return WORKER_PREFIX + name


def manager_key(manager_id: str) -> str:
    return MANAGER_PREFIX + manager_id


def route_key(session_id: str) -> str:
    return ROUTE_PREFIX + session_id


def direct_key(session_id: str) -> str:
    """Where a session's driver can be reached without its node, if it can."""
    return DIRECT_PREFIX + session_id


# Seconds a proxy may hold such notes before writing them, at most.
TOUCH_INTERVAL = 0.5


def touch_key(session_id: str) -> str:
    """When a proxy last passed a command of the session straight to its
    driver (Unix time), for the node's idle timeout."""
    return TOUCH_PREFIX + session_id


def session_key(session_id: str) -> str:
    return SESSION_PREFIX + session_id


def result_key(session_id: str) -> str:
    return f"{SESSION_PREFIX}{session_id}:result"


def connect(url: str) -> redis.Redis:
    """A client that decodes to str and retries a dropped connection."""
    return redis.Redis.from_url(
        url,
        decode_responses=True,
        health_check_interval=30,
        socket_keepalive=True,
        retry_on_timeout=True,
    )


# -- session records ---------------------------------------------------------


def create_session(
    client: redis.Redis,
    session_id: str,
    browser: str,
    requested: dict[str, Any],
    metadata: dict[str, str] | None = None,
) -> None:
    """Record a new session as queued."""
    now = time.time()
    with client.pipeline() as pipe:
        pipe.hset(
            session_key(session_id),
            mapping={
                "state": QUEUED,
                "browser": browser,
                "requested": json.dumps(requested),
                "metadata": json.dumps(metadata or {}),
                "created_at": now,
                "queued_at": now,
            },
        )
        pipe.sadd(LIVE_KEY, session_id)
        pipe.execute()
    log.info("session %s queued for %s", session_id, browser or "any browser")


def transition(
    client: redis.Redis,
    session_id: str,
    new_state: str,
    *,
    allowed: tuple[str, ...],
    keep: float = 0.0,
    **fields: Any,
) -> bool:
    """Move the record to `new_state` if it is in one of `allowed`."""
    pairs: list[Any] = [f"{new_state}_at", time.time()]
    for name, value in fields.items():
        pairs += [name, value if isinstance(value, str | int | float) else str(value)]
    moved, previous = client.eval(
        _TRANSITION_LUA,
        1,
        session_key(session_id),
        new_state,
        ",".join(allowed),
        keep,
        *pairs,
    )
    if moved and new_state == TERMINATED:
        client.srem(LIVE_KEY, session_id)
    if moved:
        detail = f" ({fields['reason']})" if "reason" in fields else ""
        log.info("session %s %s -> %s%s", session_id, previous, new_state, detail)
    return bool(moved)


def terminate(
    client: redis.Redis, session_id: str, reason: str, *, retention: float
) -> bool:
    """End a live session record with `reason`; False if it had ended."""
    ended = transition(
        client,
        session_id,
        TERMINATED,
        allowed=LIVE_STATES,
        keep=retention,
        reason=reason,
    )
    client.delete(route_key(session_id))
    return ended


def live_sessions(client: redis.Redis) -> list[str]:
    """Ids of every session recorded as not yet terminated."""
    return sorted(client.smembers(LIVE_KEY))  # type: ignore[arg-type]


def session(client: redis.Redis, session_id: str) -> dict[str, str]:
    """The session record, or {} when there is none."""
    return client.hgetall(session_key(session_id))  # type: ignore[return-value]


def post_result(client: redis.Redis, session_id: str, result: dict[str, Any]) -> None:
    """Hand the outcome of a start to the manager waiting for it."""
    key = result_key(session_id)
    with client.pipeline() as pipe:
        pipe.rpush(key, json.dumps(result))
        pipe.expire(key, RESULT_TTL)
        pipe.execute()


def wait_result(
    client: redis.Redis, session_id: str, timeout: float
) -> dict[str, Any] | None:
    """Wait up to `timeout` seconds for the outcome of a start."""
    popped = client.blpop([result_key(session_id)], timeout=max(timeout, 0.01))
    if popped is None:
        return None
    return json.loads(popped[1])  # type: ignore[no-any-return]


# -- live components -------------------------------------------------------


def scan_prefix(client: redis.Redis, prefix: str) -> Iterator[tuple[str, str]]:
    """(suffix, value) for every string key under `prefix`."""
    keys = list(client.scan_iter(match=prefix + "*", count=500))
    if not keys:
        return
    for key, value in zip(keys, client.mget(keys), strict=True):
        if value is not None:
            yield str(key)[len(prefix) :], str(value)


def live_workers(client: redis.Redis) -> list[dict[str, Any]]:
    """The offers of every worker whose heartbeat is alive."""
    return [json.loads(value) for _, value in scan_prefix(client, WORKER_PREFIX)]


def offers_of(workers: list[dict[str, Any]]) -> list[Offer]:
    """Every browser offered by `workers` that still take sessions (not
    draining), one `Offer` per browser."""
    return [
        Offer(
            browser_name=browser["browserName"],
            browser_version=browser["browserVersion"],
            platform_name=browser.get("platformName", "linux"),
        )
        for worker in workers
        if not worker.get("draining")
        for browser in worker["browsers"]
    ]


def live_managers(client: redis.Redis) -> dict[str, str]:
    return dict(scan_prefix(client, MANAGER_PREFIX))


def route(client: redis.Redis, session_id: str) -> str | None:
    return client.get(route_key(session_id))  # type: ignore[return-value]


class Heartbeat:
    """Keeps a key alive with a TTL from a background thread.

    The value is recomputed at every beat, so a worker's offer shows its
    current slot use; `beat()` publishes at once after a change.
    """

    def __init__(
        self,
        client: redis.Redis,
        key: str,
        value: Callable[[], str],
        *,
        interval: float,
        ttl: float,
    ) -> None:
        self.client = client
        self.key = key
        self.value = value
        self.interval = interval
        self.ttl = ttl
        self._stopped = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"heartbeat {key}", daemon=True
        )

    def start(self) -> None:
        self.beat()
        self._thread.start()

    def beat(self) -> None:
        try:
            self.client.set(self.key, self.value(), px=int(self.ttl * 1000))
        except redis.RedisError:
            log.warning("heartbeat %s failed; retrying", self.key, exc_info=True)

    def stop(self) -> None:
        """Stop beating and remove the key, so others see the end at once."""
        self._stopped.set()
        try:
            self.client.delete(self.key)
        except redis.RedisError:
            log.warning("could not remove %s; it expires by itself", self.key)

    def _run(self) -> None:
        while not self._stopped.wait(self.interval):
            self.beat()
