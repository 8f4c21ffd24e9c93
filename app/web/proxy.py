"""The proxy: the grid's one public entry.

`POST /session` and `/status` go to a live manager, picked at random;
`/session/<id>/...` goes to the node that serves that session. Who is alive
is learned from heartbeat keys through Redis keyspace notifications (or by
polling, where Redis refuses to enable them). The proxy forwards only to
addresses registered in Redis, never to one a client names.
"""

from __future__ import annotations

import base64
import hmac
import json
import logging
import random
import re
from collections.abc import Callable, Iterable
from typing import Any

import gevent
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
from app.http import (
    JSON_TYPE,
    Environ,
    Response,
    StartResponse,
    Upstream,
    client_gone,
    is_upgrade,
    read_body,
    reply,
    reply_error,
    reply_json,
    request_headers,
    tunnel,
)
from app.node import rewrite

log = logging.getLogger(__name__)

LEGACY_BASE = "/wd/hub"
SESSION_ID = re.compile(r"[A-Za-z0-9-]{1,64}")
HOST = re.compile(
    r"[A-Za-z0-9.-]{1,253}(:[0-9]{1,5})?|\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?"
)
REALM = 'Basic realm="webgrid", charset="UTF-8"'
NOTIFY_FLAGS = "K$gx"
# Seconds between checks that a client waiting for a new session is still there.
CLIENT_CHECK = 0.5


class RouteTable:
    """Live nodes (by session) and managers, mirrored from Redis."""

    def __init__(self, client: redis.Redis, config: settings.Settings) -> None:
        self.client = client
        self.config = config
        self.nodes: dict[str, str] = {}
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
            address = registry.route(self.client, session_id)
            if address is not None:
                self.nodes[session_id] = address
        return address

    def forget_node(self, session_id: str) -> None:
        address = self.nodes.pop(session_id, None)
        if address is not None:
            self.on_node_gone(address)

    def reload(self) -> None:
        nodes = dict(registry.scan_prefix(self.client, registry.ROUTE_PREFIX))
        for session_id in set(self.nodes) - set(nodes):
            self.forget_node(session_id)
        self.nodes = nodes
        self.managers = registry.live_managers(self.client)

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
            if name not in table:
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


class Proxy:
    """The WSGI application of the proxy."""

    def __init__(self, config: settings.Settings, routes: RouteTable) -> None:
        self.config = config
        self.routes = routes
        self._upstreams: dict[str, Upstream] = {}
        self.max_body = config.max_body_mb * 1024 * 1024
        routes.on_node_gone = self._drop_upstream

    def _drop_upstream(self, address: str) -> None:
        upstream = self._upstreams.pop(address, None)
        if upstream is not None:
            upstream.close()

    def __call__(
        self, environ: Environ, start_response: StartResponse
    ) -> Iterable[bytes]:
        try:
            return self._route(environ, start_response)
        except Unauthorized as error:
            headers = [("Content-Type", JSON_TYPE), ("WWW-Authenticate", REALM)]
            return reply(start_response, error.status, error.to_bytes(), headers)
        except WebDriverError as error:
            return reply_error(start_response, error)
        except Exception as exc:
            log.exception("proxy failed on %s", environ.get("PATH_INFO"))
            failure = UnknownError(f"the proxy failed: {exc!r}")
            return reply_error(start_response, failure)

    def _route(self, environ: Environ, start_response: StartResponse) -> Any:
        _check_target(environ)
        path = _canonical(environ.get("PATH_INFO", ""))
        method = environ["REQUEST_METHOD"]
        if not (method == "GET" and path == "/status") and not is_upgrade(environ):
            self._check_credentials(environ)
        if path in ("/session", "/session/"):
            if method != "POST":
                raise UnknownMethod(f"{method} /session: new sessions take POST")
            return self._to_manager(environ, start_response, "/session")
        if path == "/status":
            return self._status(environ, start_response)
        parts = rewrite.split_path(path)
        if parts is not None:
            if is_upgrade(environ):
                return self._tunnel(environ, start_response, parts[0], path)
            return self._to_node(environ, start_response, parts[0], path)
        raise UnknownCommand(f"{method} {path} is not a WebDriver command")

    def _check_credentials(self, environ: Environ) -> None:
        """Require basic auth when a user and password are set.

        NOTE: WebSocket upgrades are let through: Selenium clients send no
        credentials there, and the session id in their path, unguessable and
        known only to the client that created the session, stands for them.
        """
        if not self.config.username:
            return
        given = _basic_credentials(environ.get("HTTP_AUTHORIZATION", ""))
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

    def _tunnel(
        self, environ: Environ, start_response: StartResponse, sid: str, path: str
    ) -> Any:
        address = self._node_of(sid)
        try:
            return tunnel(environ, start_response, address, path)
        except OSError as exc:
            raise InvalidSessionId(
                f"session {sid!r} has no WebSocket now: {exc}", session_id=sid
            ) from None

    def _to_node(
        self, environ: Environ, start_response: StartResponse, sid: str, path: str
    ) -> Any:
        address = self._node_of(sid)
        try:
            answer = self._forward(environ, address, path, stream=True)
        except ConnectionRefusedError:
            self.routes.forget_node(sid)
            raise InvalidSessionId(
                f"session {sid!r} has ended: its node is gone", session_id=sid
            ) from None
        except OSError as exc:
            raise UnknownError(
                f"the node of session {sid!r} failed to answer: {exc}",
                session_id=sid,
            ) from None
        # The body streams from the node to the client as it arrives.
        start_response(f"{answer.status} {answer.reason}", answer.headers)
        return answer

    def _to_manager(
        self, environ: Environ, start_response: StartResponse, path: str
    ) -> Any:
        body = read_body(environ, self.max_body)
        environ["webgrid.body"] = body
        managers = list(self.routes.managers.values())
        random.shuffle(managers)
        for address in managers:
            try:
                answer = self._forward_watching_client(environ, address, path)
            except ConnectionRefusedError:
                log.warning("manager %s refused a connection; trying another", address)
                continue
            if answer is None:
                log.info("client of %s %s went away; request dropped", "POST", path)
                return []
            body = answer.body
            if path == "/session" and answer.status == 200:
                body = rewrite.to_public(body, self._public_base(environ))
            return reply(start_response, answer.status, body, answer.headers)
        raise SessionNotCreated(
            "no manager is alive to start sessions; start one with "
            "'python -m app.web manager'"
        )

    def _forward_watching_client(
        self, environ: Environ, address: str, path: str
    ) -> Response | None:
        """Forward; if the client leaves first, drop the upstream request
        (closing its connection tells the manager) and return None."""
        request = gevent.spawn(self._forward, environ, address, path)
        while not request.ready():
            request.join(CLIENT_CHECK)
            if not request.ready() and client_gone(environ):
                request.kill()
                return None
        return request.get()  # type: ignore[no-any-return]

    def _public_base(self, environ: Environ) -> str:
        """Scheme and authority a client reaches WebSockets at: the public URL
        set, else the host and port the client itself used."""
        if self.config.public_url:
            return "ws" + self.config.public_url[len("http") :]
        host = environ.get("HTTP_HOST") or (
            f"{environ['SERVER_NAME']}:{environ['SERVER_PORT']}"
        )
        return f"ws://{host}"

    def _status(self, environ: Environ, start_response: StartResponse) -> Any:
        try:
            return self._to_manager(environ, start_response, "/status")
        except SessionNotCreated as error:
            body = {"value": {"ready": False, "message": error.message}}
            return reply_json(start_response, 200, _dumps(body))

    def _forward(
        self, environ: Environ, address: str, path: str, *, stream: bool = False
    ) -> Any:
        """Send the request to `address`; a `Response`, or with `stream` a
        `Streamed` answer whose body is read as it is written on."""
        body = environ.get("webgrid.body")
        if body is None:
            body = read_body(environ, self.max_body)
        if environ.get("QUERY_STRING"):
            path += "?" + environ["QUERY_STRING"]
        upstream = self._upstreams.get(address)
        if upstream is None:
            upstream = self._upstreams[address] = Upstream(address)
        headers = request_headers(environ, address)
        log.debug("%s %s -> %s", environ["REQUEST_METHOD"], path, address)
        send = upstream.stream if stream else upstream.request
        return send(environ["REQUEST_METHOD"], path, body or None, headers)


def _check_target(environ: Environ) -> None:
    """Refuse request targets that could steer a request elsewhere: an
    absolute URI (this is no forward proxy), an encoded slash or backslash,
    and dot segments."""
    target = str(environ.get("webgrid.target", environ.get("PATH_INFO", "")))
    path = target.split("?", 1)[0]
    if not path.startswith("/"):
        raise InvalidArgument(
            f"the request target {target[:100]!r} is not a path; send requests "
            "to the grid itself, it forwards nothing elsewhere"
        )
    lowered = path.lower()
    if any(code in lowered for code in ("%2f", "%5c", "%2e", "\\")):
        raise InvalidArgument(f"the path {path[:100]!r} has an encoded separator")
    if any(segment in (".", "..") for segment in path.split("/")):
        raise InvalidArgument(f"the path {path[:100]!r} has dot segments")
    host = str(environ.get("HTTP_HOST", ""))
    if host and not HOST.fullmatch(host):
        raise InvalidArgument(f"the Host header {host[:100]!r} is not a host")


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
