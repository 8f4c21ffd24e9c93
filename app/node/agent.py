"""The node agent: one browser session, from its driver's start to cleanup.

The agent starts the driver on a free port, creates the browser session,
then serves the session's commands, swapping the grid's session id for the
driver's. While it serves it keeps the session's route alive in Redis and
watches three things: the idle timeout, its worker, and its driver. It ends
on `DELETE /session/<id>`, on the last window closed, on any of those, or
on SIGTERM; then it quits the browser and leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import os
import pathlib
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from typing import Any

import gevent
import gevent.event
import redis

from app import capabilities, registry
from app.errors import (
    InvalidSessionId,
    SessionNotCreated,
    UnknownCommand,
    UnknownError,
    WebDriverError,
)
from app.http.client import Reply, Upstream
from app.http.messages import TAKEN, Answer, Request, end_to_end
from app.http.server import Server, error_answer, json_answer
from app.http.tunnel import is_upgrade, tunnel
from app.node import drivers, files, rewrite, spare
from app.node.config import NodeConfig

log = logging.getLogger(__name__)

# Seconds a stopping node waits for answers still being written.
ANSWER_GRACE = 2.0
DRIVER_LOG = "driver.log"
# How often a starting driver is asked whether it listens (it takes ~10 ms).
DRIVER_POLL = 0.005
# Driver answers up to this size are read whole; larger ones stream on.
WHOLE_ANSWER = 1024 * 1024


class NodeAgent:
    """Runs one session; `run()` returns the process exit code."""

    def __init__(self, config: NodeConfig) -> None:
        self.config = config
        self.grid = config.grid
        self.session_id = config.session_id
        self.client = registry.connect(self.grid.redis_url)
        self.driver_process: subprocess.Popen[bytes] | None = None
        self.driver: Upstream | None = None
        self.driver_id = ""
        self.address = ""
        self.server: Server | None = None
        self.route: registry.Heartbeat | None = None
        self.last_activity = time.monotonic()
        self.commands = 0
        # How late notes of commands sent straight to the driver may come.
        self.note_lag = 0.0
        self._in_flight = 0
        self._tunnels = 0
        # WebSocket paths of the session ("/se/bidi", "/se/cdp") and where
        # each leads: (address, path, request headers to leave out).
        self.sockets: dict[str, tuple[str, str, frozenset[str]]] = {}
        self.files = files.Files(
            pathlib.Path(tempfile.gettempdir()),
            config.capabilities.get(files.DOWNLOADS_CAP) is True,
        )
        self.idle_timeout, self.first_timeout = _idle_timeouts(config)
        self._worker_missing_since: float | None = None
        self._stopping = gevent.event.Event()
        self._stop_reason = ""
        self._deleted = False

    # -- the life of the node ------------------------------------------------

    def run(self) -> int:
        gevent.signal_handler(signal.SIGTERM, self.stop, "stopped by its worker")
        _lead_own_group()
        try:
            capabilities = self._start_session()
            self._serve()
        except WebDriverError as exc:
            self._fail(exc)
            spare.report_started()
            self._cleanup()
            return 1
        announced = self._announce(capabilities)
        # Once the client has its answer: the next spare's start would
        # slow the announcement down.
        spare.report_started()
        if not announced:
            self._cleanup()
            return 0
        gevent.spawn(self._watch)
        self._stopping.wait()
        self._finish()
        return 0

    def stop(self, reason: str) -> None:
        """Ask the node to end; the first reason given is the one recorded."""
        if not self._stopping.is_set():
            self._stop_reason = reason
            self._stopping.set()

    # -- start ---------------------------------------------------------------

    def _start_session(self) -> dict[str, Any]:
        deadline = time.monotonic() + self.grid.startup_timeout
        port = _free_port()
        self._launch_driver(port)
        self.driver = Upstream(f"127.0.0.1:{port}", timeout=None)
        self._wait_driver_ready(deadline)
        return self._create_browser_session(deadline)

    def _launch_driver(self, port: int) -> None:
        bidi_port = _free_port() if self.config.browser == "firefox" else 0
        command = drivers.driver_command(
            self.grid, self.config.browser, port, bidi_port=bidi_port
        )
        try:
            with open(DRIVER_LOG, "wb") as out:
                self.driver_process = subprocess.Popen(
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
        except OSError as exc:
            raise SessionNotCreated(
                f"cannot start the {self.config.browser} driver {command[0]!r}: "
                f"{exc.strerror}; install it or set its path in the worker's "
                "settings (WEBGRID_CHROMEDRIVER / WEBGRID_GECKODRIVER)"
            ) from None

    def _wait_driver_ready(self, deadline: float) -> None:
        assert self.driver is not None and self.driver_process is not None
        while time.monotonic() < deadline:
            code = self.driver_process.poll()
            if code is not None:
                raise SessionNotCreated(
                    f"the {self.config.browser} driver exited with code {code} "
                    f"at start: {_tail(DRIVER_LOG)}"
                )
            try:
                self.driver.request("GET", "/status", timeout=2)
                return
            except OSError:
                gevent.sleep(DRIVER_POLL)
        raise SessionNotCreated(
            f"the {self.config.browser} driver did not answer within "
            f"{self.grid.startup_timeout:g} s (WEBGRID_STARTUP_TIMEOUT)"
        )

    def _create_browser_session(self, deadline: float) -> dict[str, Any]:
        assert self.driver is not None
        caps = drivers.driver_capabilities(
            self.grid, self.config.browser, self.config.capabilities
        )
        if self.files.downloads is not None:
            files.browser_download_options(
                self.config.browser, caps, self.files.downloads
            )
        body = json.dumps({"capabilities": {"alwaysMatch": caps, "firstMatch": [{}]}})
        headers = [("Content-Type", "application/json; charset=utf-8")]
        try:
            status, answer = self.driver.request(
                "POST",
                "/session",
                headers,
                body.encode(),
                timeout=max(deadline - time.monotonic(), 1.0),
            )
        except TimeoutError:
            raise SessionNotCreated(
                f"the browser did not start within {self.grid.startup_timeout:g} s "
                "(WEBGRID_STARTUP_TIMEOUT)"
            ) from None
        except OSError as exc:
            raise SessionNotCreated(
                f"the driver failed to start a browser: {exc}"
            ) from None
        return self._session_from(status, answer)

    def _session_from(self, status: int, body: bytes) -> dict[str, Any]:
        try:
            value = json.loads(body)["value"]
        except (ValueError, KeyError, TypeError):
            value = {}
        if status != 200 or "sessionId" not in value:
            message = value.get("message") if isinstance(value, dict) else None
            raise SessionNotCreated(
                f"the {self.config.browser} driver refused the session: "
                f"{message or body[:500].decode(errors='replace')}"
            )
        self.driver_id = str(value["sessionId"])
        capabilities = json.loads(
            rewrite.to_client(
                json.dumps(value.get("capabilities", {})).encode(),
                self.driver_id,
                self.session_id,
            )
        )
        return capabilities  # type: ignore[no-any-return]

    def _serve(self) -> None:
        self.server = Server((self.grid.host, 0), self._handle)
        self.server.start()
        self.address = f"{self.grid.host}:{self.server.server_port}"

    def _announce(self, capabilities: dict[str, Any]) -> bool:
        """Publish the route, mark the session running, answer the manager."""
        capabilities = self._publish_sockets(capabilities)
        if self.files.downloads is not None:
            capabilities[files.DOWNLOADS_CAP] = True
        self._offer_direct()
        self.route = registry.Heartbeat(
            self.client,
            registry.route_key(self.session_id),
            lambda: self.address,
            interval=self.grid.heartbeat_interval,
            ttl=self.grid.heartbeat_ttl,
        )
        self.route.start()
        running = registry.transition(
            self.client,
            self.session_id,
            registry.RUNNING,
            allowed=(registry.PROVISIONING,),
            node=self.address,
            capabilities=json.dumps(capabilities),
        )
        if not running:
            self._withdraw_direct()
            self.stop("the request was withdrawn before the browser was ready")
            return False
        registry.post_result(
            self.client,
            self.session_id,
            {"ok": True, "capabilities": capabilities},
        )
        return True

    def _offer_direct(self) -> None:
        """Let proxies send plain commands straight to the driver, a hop
        fewer, where they can reach it: when this node listens on loopback,
        any proxy that reaches it runs on this host."""
        if not is_loopback(self.grid.host) or self.driver is None:
            return
        self.note_lag = registry.TOUCH_INTERVAL
        self.client.set(
            registry.direct_key(self.session_id),
            f"{self.driver.address} {self.driver_id}",
            ex=max(int(self.grid.session_retention), 60),
        )

    def _withdraw_direct(self) -> None:
        with contextlib.suppress(redis.RedisError):
            self.client.delete(
                registry.direct_key(self.session_id),
                registry.touch_key(self.session_id),
            )

    def _publish_sockets(self, caps: dict[str, Any]) -> dict[str, Any]:
        """Point the session's WebSocket URLs (BiDi, Chrome DevTools) at this
        node, which tunnels them; the proxy points them at the grid."""
        caps = dict(caps)
        base = f"ws://{self.address}/session/{self.session_id}"
        bidi = caps.get("webSocketUrl")
        if isinstance(bidi, str) and bidi.startswith("ws://"):
            address, _, path = bidi[len("ws://") :].partition("/")
            driver_path = "/" + path.replace(self.session_id, self.driver_id)
            self.sockets["/se/bidi"] = (address, driver_path, frozenset())
            caps["webSocketUrl"] = base + "/se/bidi"
        devtools = _devtools_target(caps)
        if devtools is not None:
            # NOTE: DevTools refuses WebSocket clients that send an Origin.
            self.sockets["/se/cdp"] = (*devtools, frozenset({"origin"}))
            caps["se:cdp"] = base + "/se/cdp"
            caps["se:cdpVersion"] = caps.get("browserVersion", "")
        return caps

    def _fail(self, error: WebDriverError) -> None:
        log.warning("node %s could not start: %s", self.session_id, error.message)
        ended = registry.terminate(
            self.client,
            self.session_id,
            f"start failed: {error.message}",
            retention=self.grid.session_retention,
        )
        if ended:
            registry.post_result(
                self.client,
                self.session_id,
                {"ok": False, "error": error.code, "message": error.message},
            )

    # -- serve ---------------------------------------------------------------

    def _handle(self, request: Request) -> Answer:
        self.last_activity = time.monotonic()
        self.commands += 1
        self._in_flight += 1
        try:
            if is_upgrade(request):
                answer = self._tunnel(request)
            else:
                answer = self._forward(request)
        except WebDriverError as error:
            answer = error_answer(error)
        except Exception as exc:
            log.exception("node %s failed on a command", self.session_id)
            failure = UnknownError(
                f"the node failed: {exc!r}", session_id=self.session_id
            )
            answer = error_answer(failure)
        except BaseException:
            self._answered(False)
            raise
        if answer is TAKEN:
            self._answered(True)
            return answer
        answer.done = _then(answer.done, self._answered)
        return answer

    def _answered(self, whole: bool) -> None:
        """Called once an answer has been written to the client."""
        self._in_flight -= 1
        self.last_activity = time.monotonic()

    def _tunnel(self, request: Request) -> Answer:
        parts = rewrite.split_path(request.path)
        if parts is None or parts[0] != self.session_id:
            raise InvalidSessionId(
                "this node serves no such session", session_id=self.session_id
            )
        target = self.sockets.get(parts[1])
        if target is None:
            raise UnknownCommand(
                f"this session has no WebSocket at {parts[1]}; ask for one with "
                "the capability webSocketUrl: true (BiDi) or use Chromium (CDP)",
                session_id=self.session_id,
            )
        address, path, drop = target
        self._tunnels += 1
        try:
            return tunnel(request, address, path, drop=drop)
        except OSError as exc:
            raise UnknownError(
                f"the browser's WebSocket at {address} failed: {exc}",
                session_id=self.session_id,
            ) from None
        finally:
            self._tunnels -= 1

    def _forward(self, request: Request) -> Answer:
        method, path = request.method, request.path
        driver_path = rewrite.to_driver(path, self.session_id, self.driver_id)
        if driver_path is None or self._stopping.is_set():
            raise InvalidSessionId(
                f"this node serves no session at {path}", session_id=self.session_id
            )
        if request.query:
            driver_path += "?" + request.query
        body = request.body.read(self.grid.max_body_mb * 1024 * 1024)
        rest = path[len(rewrite.SESSION_PATH) + len(self.session_id) :]
        if files.is_file_command(rest):
            value = self.files.handle(method, rest, body)
            return json_answer(200, json.dumps({"value": value}).encode())
        reply = self._to_driver(method, driver_path, request, body)
        if reply.length is not None and reply.length > WHOLE_ANSWER:
            return self._streamed(reply)
        out = reply.read()
        self._after(method, path, reply.status, out)
        out = rewrite.to_client(out, self.driver_id, self.session_id)
        # The session may have ended with this command: then the connection
        # closes after the answer, so that the node can stop right away.
        closing = self._stopping.is_set()
        return Answer(reply.status, reply.headers, out, close=closing)

    def _to_driver(
        self, method: str, path: str, request: Request, body: bytes
    ) -> Reply:
        assert self.driver is not None
        headers = end_to_end(request.headers, request.fields)
        try:
            return self.driver.send(method, path, headers, body)
        except OSError as exc:
            self.stop(f"the driver stopped answering: {exc}")
            raise UnknownError(
                f"the browser's driver stopped answering ({exc}); the session "
                "has ended",
                session_id=self.session_id,
            ) from None

    def _streamed(self, reply: Reply) -> Answer:
        """A large answer (a screenshot, a page source), passed on as it
        arrives, its mentions of the driver's session id replaced."""
        same = len(self.driver_id) == len(self.session_id)
        return Answer(
            reply.status,
            reply.headers,
            rewrite.to_client_stream(reply, self.driver_id, self.session_id),
            length=reply.length if same else None,
            done=reply.done,
        )

    def _after(self, method: str, path: str, status: int, body: bytes) -> None:
        """End the node when a command has ended the session."""
        if method != "DELETE":
            return
        rest = path[len(rewrite.SESSION_PATH) + len(self.session_id) :]
        if rest in ("", "/"):
            self._deleted = True
            self.stop("deleted by the client")
        elif rest == "/window" and status == 200 and _no_windows_left(body):
            self._deleted = True
            self.stop("the last window was closed")

    # -- watch ---------------------------------------------------------------

    def _watch(self) -> None:
        interval = min(self.grid.heartbeat_interval, 1.0)
        while not self._stopping.wait(interval):
            reason = self._reason_to_stop()
            if reason:
                self.stop(reason)

    def _reason_to_stop(self) -> str:
        grid = self._read_grid()
        if grid is not None:
            self._note_touch(grid[3])
        if self._tunnels:
            self.last_activity = time.monotonic()
        idle = time.monotonic() - self.last_activity - self.note_lag
        if not self.commands and idle > self.first_timeout:
            return f"no command within {self.first_timeout:g} s of its start"
        if idle > self.idle_timeout:
            return f"idle for more than {self.idle_timeout:g} s"
        if self.config.parent_pid and os.getppid() != self.config.parent_pid:
            return "its worker is gone"
        if self.driver_process and self.driver_process.poll() is not None:
            return f"the driver exited with code {self.driver_process.returncode}"
        return self._grid_says_stop(grid) if grid is not None else ""

    def _read_grid(self) -> tuple[Any, Any, bool, Any] | None:
        """The session's state and reason, whether the worker lives, and when
        a proxy last passed a command straight to the driver; None if Redis
        does not answer."""
        try:
            with self.client.pipeline(transaction=False) as pipe:
                pipe.hmget(registry.session_key(self.session_id), "state", "reason")
                pipe.exists(registry.worker_key(self.config.worker))
                pipe.get(registry.touch_key(self.session_id))
                (state, reason), worker_alive, touched = pipe.execute()
        except redis.RedisError:
            return None
        return state, reason, bool(worker_alive), touched

    def _note_touch(self, touched: str | None) -> None:
        """Count commands the proxy sent straight to the driver as activity."""
        if touched is None:
            return
        try:
            ago = max(time.time() - float(touched), 0.0)
        except ValueError:
            return
        self.commands = max(self.commands, 1)
        self.last_activity = max(self.last_activity, time.monotonic() - ago)

    def _grid_says_stop(self, grid: tuple[Any, Any, bool, Any]) -> str:
        """A reason to stop found in Redis: the record ended, or the worker."""
        state, reason, worker_alive, _ = grid
        if state == registry.TERMINATED:
            return f"ended by the grid: {reason}"
        return self._worker_gone(worker_alive or not self.config.worker)

    def _worker_gone(self, alive: bool) -> str:
        """A reason once the worker's heartbeat has been missing a full TTL."""
        now = time.monotonic()
        if alive:
            self._worker_missing_since = None
            return ""
        if self._worker_missing_since is None:
            self._worker_missing_since = now
        if now - self._worker_missing_since > self.grid.heartbeat_ttl:
            return "its worker is gone"
        return ""

    # -- end -----------------------------------------------------------------

    def _finish(self) -> None:
        log.info("node %s ending: %s", self.session_id, self._stop_reason)
        if self.route is not None:
            self.route.stop()
        self._withdraw_direct()
        try:
            registry.terminate(
                self.client,
                self.session_id,
                self._stop_reason,
                retention=self.grid.session_retention,
            )
        except redis.RedisError as exc:
            # The browser goes all the same; a reaper ends the record later.
            log.warning("could not record the end of the session: %s", exc)
        self._stop_serving()
        self._quit_browser()
        self._cleanup()

    def _stop_serving(self) -> None:
        """Stop accepting, and give answers being written a moment to go."""
        if self.server is None:
            return
        self.server.close()
        deadline = time.monotonic() + ANSWER_GRACE
        while self._in_flight and time.monotonic() < deadline:
            gevent.sleep(0.01)

    def _quit_browser(self) -> None:
        if self._deleted or not self.driver_id or self.driver is None:
            return
        try:
            self.driver.request("DELETE", f"/session/{self.driver_id}", timeout=10)
        except OSError:
            log.debug("node %s: driver gone before quit", self.session_id)

    def _cleanup(self) -> None:
        """Stop the driver, then every other process of this node's group."""
        if self.server is not None:
            self.server.close()
        if self.driver is not None:
            self.driver.close()
        _stop_driver(self.driver_process, at_once=self._deleted)
        # NOTE: Chromium's helpers outlive the browser by a second or two and
        # are no longer its children by then, but they stay in this group.
        # The node itself takes SIGTERM as a request to stop, which it is
        # doing already.
        os.killpg(0, signal.SIGTERM)


def _idle_timeouts(config: NodeConfig) -> tuple[float, float]:
    """The idle timeout (the client's, capped) and the first-command one."""
    asked = capabilities.grid_options(config.capabilities).idle_timeout
    idle = min(asked or config.grid.idle_timeout, config.grid.max_idle_timeout)
    return idle, min(config.grid.first_command_timeout, idle)


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _tail(path: str, lines: int = 10) -> str:
    try:
        with open(path, "rb") as log_file:
            text = log_file.read()[-4000:].decode(errors="replace")
    except OSError:
        return "(no driver log)"
    return " | ".join(text.strip().splitlines()[-lines:]) or "(empty driver log)"


def _no_windows_left(body: bytes) -> bool:
    try:
        return json.loads(body).get("value") == []
    except (ValueError, AttributeError):
        return False


def _devtools_target(caps: dict[str, Any]) -> tuple[str, str] | None:
    """(address, path) of the browser's DevTools WebSocket, if it has one."""
    options = caps.get("goog:chromeOptions")
    debugger = options.get("debuggerAddress") if isinstance(options, dict) else None
    if not isinstance(debugger, str):
        return None
    address = debugger.replace("localhost", "127.0.0.1")
    try:
        _, answer = Upstream(address, timeout=5).request("GET", "/json/version")
        url = str(json.loads(answer)["webSocketDebuggerUrl"])
    except (OSError, ValueError, KeyError):
        log.warning("no DevTools endpoint at %s; se:cdp not offered", address)
        return None
    return address, "/" + url.split("://", 1)[1].partition("/")[2]


def _lead_own_group() -> None:
    """Make the node lead a process group of its own, which the driver and
    browser join, so that ending the group ends exactly the session."""
    if os.getpgid(0) != os.getpid():
        with contextlib.suppress(OSError):
            os.setpgid(0, 0)


def _stop_driver(process: subprocess.Popen[bytes] | None, *, at_once: bool) -> None:
    if process is None or process.poll() is not None:
        return
    if not at_once:
        process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(2)
    process.kill()
    process.wait()


def _then(
    first: Callable[[bool], None] | None, then: Callable[[bool], None]
) -> Callable[[bool], None]:
    """A callback that calls `first` (if any), then `then`."""

    def both(whole: bool) -> None:
        try:
            if first is not None:
                first(whole)
        finally:
            then(whole)

    return both
