"""The proxy: the grid's one public entry.

`POST /session` and `/status` go to a live manager, picked at random;
`/session/<id>/...` goes to the node that serves that session. Who is alive
is learned from heartbeat keys through Redis keyspace notifications (or by
polling, where Redis refuses to enable them). The proxy forwards only to
addresses registered in Redis, never to one a client names.
"""

from __future__ import annotations

import base64
import functools
import hmac
import json
import logging
import random
import re
import time
from collections.abc import Callable
from typing import Any

import gevent
import gevent.event
import redis

from app import registry, settings
from app.errors import (
    InvalidArgument,
    InvalidSessionId,
    SessionNotCreated,
    Unauthorized,
    UnknownCommand,
    UnknownError,
    UnknownMethod,
    WebDriverError,
)
from app.http.client import Reply, Upstream
from app.http.messages import (
    TAKEN,
    Answer,
    BadMessage,
    Body,
    Headers,
    Request,
    end_to_end,
    too_large,
)
from app.http.server import error_answer, json_answer
from app.http.tunnel import is_upgrade, tunnel
from app.http.wsgi import client_gone
from app.node import rewrite

log = logging.getLogger(__name__)

LEGACY_BASE = "/wd/hub"
SESSION_ID = re.compile(r"[A-Za-z0-9-]{1,64}")
HOST = re.compile(
    r"[A-Za-z0-9.-]{1,253}(:[0-9]{1,5})?|\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?"
)
# The longest Host header that can name a host: a name of 253 and a port.
MAX_HOST = 259
REALM = 'Basic realm="webgrid", charset="UTF-8"'
CREDENTIALS = frozenset({"authorization"})
NOTIFY_FLAGS = "K$gx"
# Seconds between checks that a client waiting for a new session is still there.
CLIENT_CHECK = 0.5
# Seconds a manager hung up on may take to answer that it gave the start up.
HANG_UP_WAIT = 5.0
# Why a session is ended whose client reset the connection on its answer.
UNREAD = "was answered, but its client reset the connection without reading it"
# How a connection to a manager that has died fails, before any answer.
MANAGER_GONE = (ConnectionRefusedError, ConnectionResetError, BrokenPipeError)
# Request bodies up to this size are read whole before they are sent on;
# driver answers up to this size are read whole to swap session ids.
WHOLE_BODY = 1024 * 1024
WHOLE_ANSWER = 1024 * 1024


class RouteTable:
    """Live nodes (by session) and managers, mirrored from Redis."""

    def __init__(self, client: redis.Redis, config: settings.Settings) -> None:
        self.client = client
        self.config = config
        self.nodes: dict[str, str] = {}
        # Drivers a proxy may send plain commands to, a hop fewer than through
        # their nodes: session id -> (address, the driver's session id).
        self.drivers: dict[str, tuple[str, str]] = {}
        self.managers: dict[str, str] = {}
        self._db = int(client.connection_pool.connection_kwargs.get("db", 0))
        self.on_node_gone: Callable[[str], None] = lambda address: None

    def start(self) -> None:
        """Load what is alive now and follow changes in the background."""
        gevent.spawn(self._follow)

    def node(self, session_id: str) -> str | None:
        """The node serving `session_id`, asking Redis on a miss."""
        address = self.nodes.get(session_id)
        if address is None:
            # NOTE: a client's first command can arrive before the keyspace
            # event that announces its route; Redis has the answer already.
            address = self._learn(session_id)
        return address

    def forget_node(self, session_id: str) -> None:
        address = self.nodes.pop(session_id, None)
        if address is not None:
            self.on_node_gone(address)
        driver = self.drivers.pop(session_id, None)
        if driver is not None:
            self.on_node_gone(driver[0])

    def reload(self) -> None:
        nodes = dict(registry.scan_prefix(self.client, registry.ROUTE_PREFIX))
        direct = dict(registry.scan_prefix(self.client, registry.DIRECT_PREFIX))
        for session_id in set(self.nodes) - set(nodes):
            self.forget_node(session_id)
        self.nodes = nodes
        self.drivers = {
            session_id: _driver_of(value)
            for session_id, value in direct.items()
            if session_id in nodes
        }
        self.managers = registry.live_managers(self.client)

    def _learn(self, session_id: str) -> str | None:
        """Read a session's route, and its driver's where offered."""
        route_key = registry.route_key(session_id)
        address, direct = self.client.mget(route_key, registry.direct_key(session_id))
        if address is None:
            return None
        self.nodes[session_id] = str(address)
        if direct is not None:
            self.drivers[session_id] = _driver_of(str(direct))
        return str(address)

    def _enable_notifications(self) -> bool:
        try:
            current = self.client.config_get("notify-keyspace-events")
            flags = str(current.get("notify-keyspace-events") or "")
            wanted = "".join(sorted(set(flags) | set(NOTIFY_FLAGS)))
            if "A" in flags or set(NOTIFY_FLAGS) <= set(flags):
                return True
            self.client.config_set("notify-keyspace-events", wanted)
            return True
        except redis.ResponseError as exc:
            log.warning(
                "Redis refused to enable keyspace notifications (%s); the proxy "
                "polls for live nodes every %g s instead",
                exc,
                self.config.heartbeat_interval,
            )
            return False

    def _follow(self) -> None:
        """Follow Redis for ever, through restarts and lost connections."""
        while True:
            try:
                if self._enable_notifications():
                    self._listen()
                else:
                    self._poll()
            except redis.RedisError as exc:
                log.warning("lost Redis (%s); reconnecting", exc)
                gevent.sleep(1)

    def _listen(self) -> None:
        prefix = f"__keyspace@{self._db}__:"
        pubsub = self.client.pubsub(ignore_subscribe_messages=True)
        try:
            pubsub.psubscribe(
                prefix + registry.ROUTE_PREFIX + "*",
                prefix + registry.MANAGER_PREFIX + "*",
            )
            self.reload()
            for message in pubsub.listen():
                self._on_event(message["channel"][len(prefix) :], message["data"])
        finally:
            pubsub.close()

    def _on_event(self, key: str, event: str) -> None:
        is_node = key.startswith(registry.ROUTE_PREFIX)
        if is_node:
            table, name = self.nodes, key[len(registry.ROUTE_PREFIX) :]
        else:
            table, name = self.managers, key[len(registry.MANAGER_PREFIX) :]
        if event == "set":
            if is_node and name not in table:
                self._learn(name)
            elif name not in table:
                value = self.client.get(key)
                if value is not None:
                    table[name] = str(value)
        elif event in ("del", "expired"):
            if is_node:
                self.forget_node(name)
            else:
                table.pop(name, None)

    def _poll(self) -> None:
        while True:
            self.reload()
            gevent.sleep(self.config.heartbeat_interval)


class ActivityNotes:
    """Tells nodes, through Redis, when their sessions last had a command
    that went straight to the driver, so their idle timeouts stay right.

    A session's first command after a quiet spell is written at once, so a
    node never takes a fresh session for unused; later ones are gathered and
    written every `registry.TOUCH_INTERVAL`, so a node's view lags by at most that.
    """

    def __init__(self, client: redis.Redis, config: settings.Settings) -> None:
        self.client = client
        self.ttl = int(config.max_idle_timeout) + 60
        self.pending: dict[str, float] = {}
        self.written: dict[str, float] = {}
        self.wake = gevent.event.Event()
        gevent.spawn(self._write_forever)

    def note(self, sid: str) -> None:
        now = time.time()
        self.pending[sid] = now
        if now - self.written.get(sid, 0.0) >= registry.TOUCH_INTERVAL:
            self.wake.set()

    def _write_forever(self) -> None:
        while True:
            self.wake.wait(registry.TOUCH_INTERVAL)
            self.wake.clear()
            notes, self.pending = self.pending, {}
            if notes:
                self._write(notes)

    def _write(self, notes: dict[str, float]) -> None:
        try:
            with self.client.pipeline(transaction=False) as pipe:
                for sid, when in notes.items():
                    pipe.set(registry.touch_key(sid), repr(when), ex=self.ttl)
                pipe.execute()
        except redis.RedisError as exc:
            log.warning("could not note activity of %d session(s): %s", len(notes), exc)
            return
        self.written = {
            sid: when
            for sid, when in {**self.written, **notes}.items()
            if when > time.time() - registry.TOUCH_INTERVAL
        }


class Proxy:
    """Answers each request the proxy receives (see `app.http.server`)."""

    def __init__(self, config: settings.Settings, routes: RouteTable) -> None:
        self.config = config
        self.routes = routes
        self._upstreams: dict[str, Upstream] = {}
        self.max_body = config.max_body_mb * 1024 * 1024
        routes.on_node_gone = self._drop_upstream
        self.activity = ActivityNotes(routes.client, config)

    def _drop_upstream(self, address: str) -> None:
        upstream = self._upstreams.pop(address, None)
        if upstream is not None:
            upstream.close()

    def __call__(self, request: Request) -> Answer:
        try:
            return self._route(request)
        except Unauthorized as error:
            return error_answer(error, [("WWW-Authenticate", REALM)])
        except WebDriverError as error:
            return error_answer(error)

    def _route(self, request: Request) -> Answer:
        _check_target(request)
        path = _canonical(request.path)
        method = request.method
        upgrade = is_upgrade(request)
        if not (method == "GET" and path == "/status") and not upgrade:
            self._check_credentials(request)
        if path in ("/session", "/session/"):
            if method != "POST":
                raise UnknownMethod(f"{method} /session: new sessions take POST")
            return self._to_manager(request, "/session")
        if path == "/status":
            return self._status(request)
        parts = rewrite.split_path(path)
        if parts is not None:
            if upgrade:
                return self._tunnel(request, parts[0], path)
            return self._to_node(request, parts[0], path)
        raise UnknownCommand(f"{method} {path} is not a WebDriver command")

    def _check_credentials(self, request: Request) -> None:
        """Require basic auth when a user and password are set.

        NOTE: WebSocket upgrades are let through: Selenium clients send no
        credentials there, and the session id in their path, unguessable and
        known only to the client that created the session, stands for them.
        """
        if not self.config.username:
            return
        given = _basic_credentials(request.header("authorization"))
        expected = (self.config.username, self.config.password)
        if given is None or not all(
            hmac.compare_digest(a.encode(), b.encode())
            for a, b in zip(given, expected, strict=True)
        ):
            raise Unauthorized(
                "this grid needs a user name and password (basic auth); put them "
                "in the grid's URL, like http://user:password@host:4444"
            )

    def _node_of(self, sid: str) -> str:
        address = self.routes.node(sid) if SESSION_ID.fullmatch(sid) else None
        if address is None:
            raise InvalidSessionId(
                f"no live session {sid!r}; it ended or never existed",
                session_id=sid,
            )
        return address

    def _tunnel(self, request: Request, sid: str, path: str) -> Answer:
        address = self._node_of(sid)
        try:
            return tunnel(request, address, path)
        except OSError as exc:
            raise InvalidSessionId(
                f"session {sid!r} has no WebSocket now: {exc}", session_id=sid
            ) from None

    def _to_node(self, request: Request, sid: str, path: str) -> Answer:
        """Forward a command to the session's node, or straight to its
        driver where it may; the answer streams to the client."""
        address = self._node_of(sid)
        rest = path[len(rewrite.SESSION_PATH) + len(sid) :]
        body = self._body_to_forward(request)
        driver = self.routes.drivers.get(sid)
        if driver is not None and goes_direct(request.method, rest):
            answer = self._to_driver(request, sid, driver, rest, body)
            if answer is not None:
                return answer
        reply = self._relay(request, sid, address, path, body)
        return Answer(
            reply.status,
            reply.headers,
            reply,
            length=reply.length,
            reason=reply.reason,
            done=reply.done,
        )

    def _to_driver(
        self,
        request: Request,
        sid: str,
        driver: tuple[str, str],
        rest: str,
        body: bytes | Body,
    ) -> Answer | None:
        """A command sent to the driver itself, its session id swapped; None
        if the driver did not take it and the node should be asked."""
        address, driver_id = driver
        self.activity.note(sid)
        path = rewrite.SESSION_PATH + driver_id + rest
        try:
            reply = self._send(request, address, path, body)
        except (OSError, BadMessage) as exc:
            if not isinstance(body, bytes):
                raise UnknownError(
                    f"the driver of session {sid!r} failed to answer: {exc}",
                    session_id=sid,
                ) from None
            # NOTE: the node knows best what became of its driver.
            log.info("driver of %s failed (%s); asking its node", sid, exc)
            self.routes.drivers.pop(sid, None)
            return None
        self.activity.note(sid)
        if reply.length is not None and reply.length <= WHOLE_ANSWER:
            data = rewrite.to_client(reply.read(), driver_id, sid)
            return Answer(reply.status, reply.headers, data, reason=reply.reason)
        return Answer(
            reply.status,
            reply.headers,
            rewrite.to_client_stream(reply, driver_id, sid),
            reason=reply.reason,
            done=reply.done,
        )

    def _relay(
        self, request: Request, sid: str, address: str, path: str, body: bytes | Body
    ) -> Reply:
        try:
            return self._send(request, address, path, body)
        except ConnectionRefusedError:
            self.routes.forget_node(sid)
            raise InvalidSessionId(
                f"session {sid!r} has ended: its node is gone", session_id=sid
            ) from None
        except (OSError, BadMessage) as exc:
            raise UnknownError(
                f"the node of session {sid!r} failed to answer: {exc}",
                session_id=sid,
            ) from None

    def _body_to_forward(self, request: Request) -> bytes | Body:
        """Small bodies whole, so that a request can be sent again on a
        fresh connection; large ones stream on as they arrive."""
        body = request.body
        length = body.length
        if length is not None and length > self.max_body:
            raise too_large(self.max_body)
        if length == 0:
            return b""
        if length is not None and length <= WHOLE_BODY:
            return body.read(self.max_body)
        return _Limited(body, self.max_body)

    def _to_manager(self, request: Request, path: str) -> Answer:
        body = request.body.read(self.max_body)
        managers = list(self.routes.managers.values())
        random.shuffle(managers)
        for address in managers:
            try:
                answer = self._ask_manager(request, address, path, body)
            except MANAGER_GONE as exc:
                # NOTE: a manager killed while it starts to read a request is
                # seen as a reset; one killed once it has queued the request
                # would leave a session that no client uses, which its first
                # command timeout ends.
                log.warning("manager %s is gone (%s); trying another", address, exc)
                continue
            if answer is None:
                log.info("client of %s %s went away; request dropped", "POST", path)
                return TAKEN
            status, headers, data = answer
            if path == "/session" and status == 200:
                public = rewrite.to_public(data, self._public_base(request))
                unread = functools.partial(self._end_unclaimed, data, UNREAD)
                return Answer(status, headers, public, unread=unread)
            return Answer(status, headers, data)
        raise SessionNotCreated(
            "no manager is alive to start sessions; start one with "
            "'python -m app.web manager'"
        )

    def _ask_manager(
        self, request: Request, address: str, path: str, body: bytes
    ) -> tuple[int, Headers, bytes] | None:
        """Forward on a connection of its own, watching the client.

        Should the client leave first, the proxy hangs up on the manager,
        which then gives the start up; a session started all the same is
        ended here. None tells that the client has gone.
        """
        upstream = Upstream(address)
        job = gevent.spawn(self._send_whole, request, upstream, path, body)
        try:
            if self._client_stays(request, job):
                return job.get()  # type: ignore[no-any-return]
            if not job.ready():
                upstream.hang_up()
                job.join(HANG_UP_WAIT)
            if job.successful() and path == "/session":
                status, _, data = job.value
                if status == 200:
                    self._end_unclaimed(data, "started after its client left")
            return None
        finally:
            job.kill()
            upstream.close()

    @staticmethod
    def _client_stays(request: Request, job: gevent.Greenlet) -> bool:
        """Wait for `job`; whether the client is still there once it is done."""
        while not job.ready():
            job.join(CLIENT_CHECK)
            if client_gone(request.sock):
                return False
        return True

    def _end_unclaimed(self, answer: bytes, why: str) -> None:
        """End the session in a manager's answer that its client left."""
        session_id = str(json.loads(answer)["value"]["sessionId"])
        log.info("session %s %s; ending it", session_id, why)
        registry.terminate(
            self.routes.client,
            session_id,
            "its client went away",
            retention=self.config.session_retention,
        )

    def _send_whole(
        self, request: Request, upstream: Upstream, path: str, body: bytes
    ) -> tuple[int, Headers, bytes]:
        reply = self._send_on(upstream, request, path, body)
        return reply.status, reply.headers, reply.read()

    def _public_base(self, request: Request) -> str:
        """Scheme and authority a client reaches WebSockets at: the public URL
        set, else the host and port the client itself used."""
        if self.config.public_url:
            return "ws" + self.config.public_url[len("http") :]
        host = request.header("host")
        if not host:
            name, port = request.sock.getsockname()[:2]
            host = f"{name}:{port}"
        return f"ws://{host}"

    def _status(self, request: Request) -> Answer:
        try:
            return self._to_manager(request, "/status")
        except SessionNotCreated as error:
            body = {"value": {"ready": False, "message": error.message}}
            return json_answer(200, _dumps(body))

    def _send(
        self, request: Request, address: str, path: str, body: bytes | Body
    ) -> Reply:
        """Send the request on to `address`, on a kept-alive connection; the
        answer's head is read."""
        upstream = self._upstreams.get(address)
        if upstream is None:
            upstream = self._upstreams[address] = Upstream(address)
        return self._send_on(upstream, request, path, body)

    @staticmethod
    def _send_on(
        upstream: Upstream, request: Request, path: str, body: bytes | Body
    ) -> Reply:
        if request.query:
            path += "?" + request.query
        headers = forwarded_headers(request.headers, request.fields)
        return upstream.send(request.method, path, headers, body)


class _Limited(Body):
    """A request body passed on as it arrives, refused past `limit` bytes."""

    def __init__(self, body: Body, limit: int) -> None:
        super().__init__(body.reader, body.length, chunked=body.chunked)
        self.inner = body
        self.limit = limit
        self.seen = 0

    def next_chunk(self) -> bytes:
        chunk = self.inner.next_chunk()
        self.seen += len(chunk)
        if self.seen > self.limit:
            raise too_large(self.limit)
        self.done = self.inner.done
        return chunk


def _check_target(request: Request) -> None:
    """Refuse request targets that could steer a request elsewhere: an
    absolute URI (this is no forward proxy), an encoded slash or backslash,
    and dot segments."""
    target = request.target
    path = request.path
    if not path.startswith("/"):
        raise InvalidArgument(
            f"the request target {target[:100]!r} is not a path; send requests "
            "to the grid itself, it forwards nothing elsewhere"
        )
    # NOTE: the common path has neither "%", "\\" nor "/.": one look each.
    if ("%" in path or "\\" in path) and any(
        code in path.lower() for code in ("%2f", "%5c", "%2e", "\\")
    ):
        raise InvalidArgument(f"the path {path[:100]!r} has an encoded separator")
    if "/." in path and any(segment in (".", "..") for segment in path.split("/")):
        raise InvalidArgument(f"the path {path[:100]!r} has dot segments")
    host = request.header("host")
    if host and (len(host) > MAX_HOST or not _is_host(host)):
        raise InvalidArgument(f"the Host header {host[:100]!r} is not a host")


@functools.lru_cache(maxsize=256)
def _is_host(value: str) -> bool:
    """Whether a Host header names a host; remembered, as clients send the
    same one with every command."""
    return HOST.fullmatch(value) is not None


def _driver_of(value: str) -> tuple[str, str]:
    """(address, driver's session id) from a direct key's value."""
    address, _, driver_id = value.partition(" ")
    return address, driver_id


def forwarded_headers(headers: Headers, fields: dict[str, str]) -> Headers:
    """The headers a request is sent on with: its end-to-end ones but the
    grid's credentials, which no node, driver or manager needs to see."""
    return end_to_end(headers, fields, also=CREDENTIALS)


def goes_direct(method: str, rest: str) -> bool:
    """Whether a command (`rest` of its path after the session id) may go
    straight to the driver. The node must see those that end the session
    (quit, closing a window) and answer the grid's own (`/se/...`)."""
    if rest.startswith("/se/") or rest in ("", "/"):
        return False
    return not (method == "DELETE" and rest in ("/window", "/window/"))


def _basic_credentials(header: str) -> tuple[str, str] | None:
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, sep, password = (
            base64.b64decode(encoded, validate=True).decode("utf-8").partition(":")
        )
    except (ValueError, UnicodeDecodeError):
        return None
    return (user, password) if sep else None


def _canonical(path: str) -> str:
    """`path` without the legacy `/wd/hub` base."""
    if path == LEGACY_BASE or path.startswith(LEGACY_BASE + "/"):
        return path[len(LEGACY_BASE) :] or "/"
    return path


def _dumps(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload).encode()
