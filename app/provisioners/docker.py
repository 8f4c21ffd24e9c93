"""The Docker provisioner: a node is a container of its own, one per session.

The container runs the node image (`node_image/`), whose entry point is the
same node agent as a local node's, told what to do by the same environment
variables. It carries labels naming the grid, the worker and the session,
so that `reap()` can find and remove the containers nobody runs any more.

    start()  ping the engine, check the image, create and start the
             container, wait until the node heartbeats and answers
    stop()   ask the node to end (SIGTERM through the init), remove it
    offer()  run each browser's `--version` in a probe container, removed
             whatever happens
    reap()   remove this grid's containers whose session has ended or
             whose worker is gone, and probes left behind, saying which
             and why
"""

from __future__ import annotations

import dataclasses
import datetime
import http.client
import json
import logging
import os
import re
import threading
import time
import urllib.parse
from collections.abc import Mapping
from typing import Any

import docker
import docker.errors
import redis
import requests
from docker.models.containers import Container

from app import registry, settings
from app.errors import SessionNotCreated, SettingsError
from app.node.config import NODE_SESSION_ENV

log = logging.getLogger(__name__)

DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"
DEFAULT_IMAGE = "webgrid-node:latest"
# The oldest engine API this module needs (init, nano_cpus): Docker 20.10.
API_VERSION = "1.41"
LABEL_PREFIX = "org.webgrid."
GRID_LABEL = LABEL_PREFIX + "grid"
WORKER_LABEL = LABEL_PREFIX + "worker"
SESSION_LABEL = LABEL_PREFIX + "session"
BROWSER_LABEL = LABEL_PREFIX + "browser"
# Marks a container that only asks a browser its version; its value: which.
PROBE_LABEL = LABEL_PREFIX + "probe"

STOP_GRACE = 10
# Beyond WEBGRID_STARTUP_TIMEOUT, what starting a container may take.
START_GRACE = 10.0
POLL = 0.1
# How long a node whose session ended during its start may take to exit.
EXIT_GRACE = 5.0
LOG_LINES = 20
# How long one wait request to the engine may stay open before it is renewed.
WAIT_CHUNK = 5
# The exit code `wait()` reports when the engine lost track of the container.
LOST = -1
# Settings whose values belong to the image, never to the worker's host.
IMAGE_SETTINGS = ("chrome_binary", "chromedriver", "firefox_binary", "geckodriver")
BINARIES = {"chrome": "/usr/bin/chromium", "firefox": "/usr/bin/firefox-esr"}
# How long a browser's `--version` may take in its probe container.
PROBE_TIMEOUT = 30
# How old a probe container must be before the reaper takes it for left
# behind. NOTE: generous, since the engine's clock may not be this host's.
PROBE_MAX_AGE = 300.0


# -- settings ------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, kw_only=True)
class DockerSettings:
    """How this worker runs node containers (WEBGRID_DOCKER_*, DOCKER_HOST)."""

    images: Mapping[str, str] = dataclasses.field(default_factory=dict)
    default_image: str = DEFAULT_IMAGE
    network: str = "host"
    cpus: float = 1.0
    memory: str = "2g"
    shm_size: str = "1g"
    docker_host: str = DEFAULT_DOCKER_HOST

    def image_for(self, browser: str) -> str:
        return self.images.get(browser, self.default_image)


_SIZE = re.compile(r"^\d+(\.\d+)?[bkmg]?$", re.IGNORECASE)


def docker_settings(environ: Mapping[str, str] = os.environ) -> DockerSettings:
    """Read the Docker settings; raise `SettingsError` naming a bad variable."""
    values: dict[str, Any] = {}
    image = environ.get("WEBGRID_DOCKER_IMAGE", "").strip()
    if image:
        values["default_image"], values["images"] = _parse_images(image)
    network = environ.get("WEBGRID_DOCKER_NETWORK", "").strip()
    if network:
        values["network"] = network
    cpus = environ.get("WEBGRID_DOCKER_CPUS", "").strip()
    if cpus:
        values["cpus"] = _parse_cpus(cpus)
    for name, field in (
        ("WEBGRID_DOCKER_MEMORY", "memory"),
        ("WEBGRID_DOCKER_SHM_SIZE", "shm_size"),
    ):
        raw = environ.get(name, "").strip()
        if raw:
            values[field] = _parse_size(name, raw)
    docker_host = environ.get("DOCKER_HOST", "").strip()
    if docker_host:
        values["docker_host"] = docker_host
    return DockerSettings(**values)


def _parse_images(text: str) -> tuple[str, dict[str, str]]:
    """'IMAGE' for every browser, or 'chrome=IMAGE,firefox=IMAGE'."""
    if "=" not in text:
        return text, {}
    images = {}
    for pair in filter(None, (p.strip() for p in text.split(","))):
        browser, _, image = pair.partition("=")
        browser = browser.strip().lower()
        if browser not in settings.BROWSERS_KNOWN or not image.strip():
            raise SettingsError(
                f"WEBGRID_DOCKER_IMAGE={text!r} is not valid: write one image "
                "for every browser, or pairs like 'chrome=IMAGE,firefox=IMAGE'"
            )
        images[browser] = image.strip()
    return DEFAULT_IMAGE, images


def _parse_cpus(text: str) -> float:
    try:
        cpus = float(text)
    except ValueError:
        cpus = -1.0
    if not 0 <= cpus <= 1024:
        raise SettingsError(
            f"WEBGRID_DOCKER_CPUS={text!r} is not valid: give the CPUs one "
            "container may use, such as 1 or 1.5 (0: no limit)"
        )
    return cpus


def _parse_size(name: str, text: str) -> str:
    if not _SIZE.match(text):
        raise SettingsError(
            f"{name}={text!r} is not valid: give a size such as 512m or 2g "
            "(0: no limit)"
        )
    return text.lower()


# -- the node --------------------------------------------------------------------


class DockerNode:
    """A node's container: `wait()` for its end, `stop()` to remove it."""

    def __init__(self, session_id: str, container: Container) -> None:
        self.session_id = session_id
        self.container = container
        self.name = container.name or container.id
        self._code: int | None = None
        self._exited = threading.Event()
        self._stop_lock = threading.Lock()
        self._stopped = False
        self._watcher = threading.Thread(
            target=self._watch, name=f"wait {self.name}", daemon=True
        )
        self._watcher.start()

    def wait(self, timeout: float) -> int | None:
        """The container's exit code, or None if it still runs after `timeout`."""
        if self._exited.wait(timeout):
            return self._code
        return None

    def stop(self, grace: int = STOP_GRACE) -> None:
        """Ask the node to end, give it `grace` seconds, remove the container."""
        with self._stop_lock:
            if self._stopped:
                return
            self._stopped = True
        try:
            self.container.stop(timeout=grace)
            self.container.remove(force=True)
        except docker.errors.NotFound:
            log.debug("container %s was already gone", self.name)
        except (docker.errors.APIError, requests.RequestException) as exc:
            log.warning(
                "could not stop container %s: %s; the reaper will remove it",
                self.name,
                exc,
            )
            return
        log.debug("container %s of session %s removed", self.name, self.session_id)

    def last_logs(self, lines: int = LOG_LINES) -> str:
        """The container's last `lines` lines of output, for error messages."""
        try:
            raw = self.container.logs(tail=lines)
        except (docker.errors.APIError, requests.RequestException) as exc:
            return f"(its logs could not be read: {exc})"
        text = raw.decode(errors="replace").strip() if isinstance(raw, bytes) else ""
        return text or "(no output)"

    def _watch(self) -> None:
        """Wait for the container's end in the background; record its code."""
        while True:
            try:
                result = self.container.wait(timeout=WAIT_CHUNK)
            except (docker.errors.APIError, requests.RequestException) as exc:
                if _timed_out(exc):
                    continue
                log.warning("lost track of container %s: %s", self.name, exc)
                self._code = LOST
                break
            self._code = int(result.get("StatusCode", LOST))
            break
        self._exited.set()


def _timed_out(exc: Exception) -> bool:
    """Whether `exc` only says that a wait request ran out of time."""
    # NOTE: over a unix socket, a read timeout comes as a ConnectionError.
    return isinstance(exc, requests.exceptions.ReadTimeout) or (
        isinstance(exc, requests.exceptions.ConnectionError) and "timed out" in str(exc)
    )


# -- the provisioner ---------------------------------------------------------------


class DockerProvisioner:
    """Starts nodes as containers of the node image."""

    def __init__(
        self,
        config: settings.Settings,
        docker_config: DockerSettings | None = None,
    ) -> None:
        self.config = config
        self.docker = docker_config or docker_settings()
        self.engine = docker.DockerClient(
            base_url=self.docker.docker_host, version=API_VERSION, max_pool_size=64
        )
        self.redis = registry.connect(config.redis_url)

    def close(self) -> None:
        self.engine.close()
        self.redis.close()

    def start(
        self,
        session_id: str,
        browser: str,
        capabilities: dict[str, Any],
        worker: str,
    ) -> DockerNode:
        """Run the node of `session_id`; return once it heartbeats and answers."""
        image = self.docker.image_for(browser)
        self._require_engine()
        self._require_image(image, browser)
        node = DockerNode(
            session_id, self._run(session_id, browser, capabilities, worker, image)
        )
        try:
            self._wait_ready(node)
        except BaseException:
            node.stop(grace=1)
            raise
        log.info("session %s runs in container %s", session_id, node.name)
        return node

    def offer(self, browsers: tuple[str, ...]) -> list[dict[str, str]]:
        """What this worker's images offer: name and version of each browser."""
        self._require_engine()
        offered = []
        for browser in browsers:
            version = self._version_in_image(browser)
            if version:
                offered.append(
                    {
                        "browserName": browser,
                        "browserVersion": version,
                        "platformName": "linux",
                    }
                )
        return offered

    # -- checks ----------------------------------------------------------------

    def _require_engine(self) -> None:
        try:
            self.engine.ping()
        except (docker.errors.DockerException, requests.RequestException) as exc:
            raise SessionNotCreated(
                f"the Docker engine at {self.docker.docker_host} does not answer "
                f"({exc}); start Docker there, or point DOCKER_HOST at a running "
                "engine"
            ) from None

    def _require_image(self, image: str, browser: str) -> None:
        try:
            self.engine.images.get(image)
        except docker.errors.ImageNotFound:
            raise SessionNotCreated(
                f"the node image {image!r} for {browser} is not on the Docker "
                f"engine at {self.docker.docker_host}; build it from the "
                f"repository root with: docker build --network host -t {image} "
                "-f node_image/Dockerfile ."
            ) from None

    # -- start -----------------------------------------------------------------

    def _run(
        self,
        session_id: str,
        browser: str,
        capabilities: dict[str, Any],
        worker: str,
        image: str,
    ) -> Container:
        """Create and start the container; remove it again if it cannot start."""
        name = container_name(session_id)
        options = self._container_options(name, session_id, browser, worker)
        options["environment"] = node_environment(
            self.config,
            session_id=session_id,
            browser=browser,
            capabilities=capabilities,
            worker=worker,
            host=options.get("hostname") or self.config.host,
        )
        try:
            container = self.engine.containers.create(image, **options)
        except docker.errors.APIError as exc:
            raise self._refused(session_id, exc) from None
        started = False
        try:
            container.start()
            started = True
        except docker.errors.APIError as exc:
            raise self._refused(session_id, exc) from None
        finally:
            # NOTE: whatever stopped the start (the engine, a lost connection,
            # the task cancelled), the created container must not stay.
            if not started:
                remove_container(container)
        log.debug("session %s: container %s started", session_id, name)
        return container

    def _container_options(
        self, name: str, session_id: str, browser: str, worker: str
    ) -> dict[str, Any]:
        options: dict[str, Any] = {
            "name": name,
            "labels": {
                GRID_LABEL: grid_label(self.config.redis_url),
                WORKER_LABEL: worker,
                SESSION_LABEL: session_id,
                BROWSER_LABEL: browser,
            },
            "init": True,
            "shm_size": self.docker.shm_size,
            "stop_signal": "SIGTERM",
        }
        if self.docker.cpus:
            options["nano_cpus"] = int(self.docker.cpus * 1e9)
        if self.docker.memory not in ("0", "0b"):
            options["mem_limit"] = self.docker.memory
        if self.docker.network == "host":
            options["network_mode"] = "host"
        else:
            # NOTE: on a named network the node listens on, and advertises,
            # its container name; the proxy must be on the same network.
            options["network"] = self.docker.network
            options["hostname"] = name
        return options

    def _refused(self, session_id: str, exc: docker.errors.APIError) -> Exception:
        reason = exc.explanation or str(exc)
        hint = ""
        if isinstance(exc, docker.errors.NotFound) and "network" in str(reason):
            hint = (
                f"; create the network (docker network create "
                f"{self.docker.network}) or set WEBGRID_DOCKER_NETWORK"
            )
        return SessionNotCreated(
            f"the Docker engine at {self.docker.docker_host} refused the "
            f"container of session {session_id}: {reason}{hint}",
            session_id=session_id,
        )

    def _wait_ready(self, node: DockerNode) -> None:
        """Return when the node runs and answers; raise if it cannot."""
        deadline = time.monotonic() + self.config.startup_timeout + START_GRACE
        while time.monotonic() < deadline:
            code = node.wait(POLL)
            record = registry.session(self.redis, node.session_id)
            if code is not None:
                raise self._exited(node, code, record)
            state = record.get("state")
            if state == registry.RUNNING and self._answers(node.session_id):
                return
            if state not in registry.LIVE_STATES:
                # A node that fails records why, then exits: wait for the
                # exit, whose logs say more than the record.
                code = node.wait(EXIT_GRACE)
                if code:
                    raise self._exited(node, code, record)
                raise self._ended(node, record)
        raise SessionNotCreated(
            f"the container {node.name} was not ready within "
            f"{self.config.startup_timeout + START_GRACE:g} s "
            f"(WEBGRID_STARTUP_TIMEOUT + {START_GRACE:g} s); its last log "
            f"lines:\n{node.last_logs()}",
            session_id=node.session_id,
        )

    def _answers(self, session_id: str) -> bool:
        """Whether the session's route is alive and its node answers HTTP."""
        address = registry.route(self.redis, session_id)
        if not address:
            return False
        host, _, port = address.rpartition(":")
        connection = http.client.HTTPConnection(host, int(port), timeout=2)
        try:
            connection.request("GET", "/status")
            connection.getresponse().read()
        except OSError:
            return False
        finally:
            connection.close()
        return True

    def _exited(
        self, node: DockerNode, code: int, record: Mapping[str, str]
    ) -> SessionNotCreated:
        said = f" ({record['reason']})" if record.get("reason") else ""
        return SessionNotCreated(
            f"the container {node.name} exited with code {code} while its node "
            f"started{said}; its last log lines:\n{node.last_logs()}",
            session_id=node.session_id,
        )

    def _ended(self, node: DockerNode, record: Mapping[str, str]) -> SessionNotCreated:
        reason = record.get("reason") or "its record is gone"
        return SessionNotCreated(
            f"session {node.session_id} ended while its container {node.name} "
            f"started: {reason}",
            session_id=node.session_id,
        )

    # -- offer -----------------------------------------------------------------

    def _version_in_image(self, browser: str) -> str:
        image = self.docker.image_for(browser)
        try:
            self._require_image(image, browser)
            out = self._probe(image, browser)
        except SessionNotCreated as exc:
            log.warning("browser %s not offered: %s", browser, exc.message)
            return ""
        found = re.search(r"\d+(\.\d+)+", out)
        return found.group(0) if found else ""

    def _probe(self, image: str, browser: str) -> str:
        """What the browser's `--version` prints in a container of `image`.

        NOTE: docker-py's `run(remove=True)` leaves behind a container that
        cannot start (no such binary), so the probe removes its own.
        """
        labels = {GRID_LABEL: grid_label(self.config.redis_url), PROBE_LABEL: browser}
        container: Container | None = None
        try:
            container = self.engine.containers.create(
                image,
                entrypoint=[BINARIES[browser], "--version"],
                network_mode="none",
                labels=labels,
            )
            return _probe_output(container, image, browser)
        except (docker.errors.APIError, requests.RequestException) as exc:
            raise _probe_failed(image, browser, exc) from None
        finally:
            if container is not None:
                remove_container(container)


def _probe_output(container: Container, image: str, browser: str) -> str:
    """Start the probe and wait for its end; what it printed."""
    container.start()
    code = int(container.wait(timeout=PROBE_TIMEOUT).get("StatusCode", LOST))
    raw = container.logs(stdout=True, stderr=code != 0, tail=LOG_LINES)
    out = raw.decode(errors="replace").strip()
    if code != 0:
        raise SessionNotCreated(
            f"{_probe_name(image, browser)} exited with code {code}: "
            f"{out or '(no output)'}; give {browser} an image that runs it "
            "(WEBGRID_DOCKER_IMAGE)"
        )
    return out


def _probe_failed(image: str, browser: str, exc: Exception) -> SessionNotCreated:
    """What went wrong with the probe of `browser`, and what to do."""
    probe = _probe_name(image, browser)
    if _timed_out(exc):
        return SessionNotCreated(
            f"{probe} did not finish within {PROBE_TIMEOUT} s; check that it "
            f"runs there, or give {browser} another image (WEBGRID_DOCKER_IMAGE)"
        )
    if isinstance(exc, docker.errors.APIError):
        return SessionNotCreated(
            f"{probe} could not run: {exc.explanation or exc}; give {browser} "
            "an image that holds it (WEBGRID_DOCKER_IMAGE)"
        )
    return SessionNotCreated(
        f"{probe} lost the Docker engine ({exc}); check that the engine "
        "DOCKER_HOST names runs"
    )


def _probe_name(image: str, browser: str) -> str:
    return f"{BINARIES[browser]} --version in image {image!r}"


# -- helpers shared with the reaper ------------------------------------------------


def container_name(session_id: str) -> str:
    return f"webgrid-{session_id}"


def grid_label(redis_url: str) -> str:
    """What names a grid: its Redis, without credentials."""
    parts = urllib.parse.urlsplit(redis_url)
    where = parts.hostname or ""
    if parts.port:
        where += f":{parts.port}"
    return f"{parts.scheme}://{where}{parts.path}"


def node_environment(
    config: settings.Settings,
    *,
    session_id: str,
    browser: str,
    capabilities: dict[str, Any],
    worker: str,
    host: str,
) -> dict[str, str]:
    """The environment of a node in a container: the grid's settings (but
    for the image's own paths) and its orders, as the local provisioner
    gives them."""
    env = {
        settings.ENV_NAMES[field.name]: _env_text(getattr(config, field.name))
        for field in dataclasses.fields(config)
        if field.name not in IMAGE_SETTINGS and field.name in settings.ENV_NAMES
    }
    env.update(
        {
            "WEBGRID_HOST": host,
            NODE_SESSION_ENV: session_id,
            "WEBGRID_NODE_BROWSER": browser,
            "WEBGRID_NODE_CAPABILITIES": json.dumps(capabilities),
            "WEBGRID_NODE_WORKER": worker,
            # No worker process is the node's parent in a container.
            "WEBGRID_NODE_PARENT": "0",
        }
    )
    return env


def _env_text(value: object) -> str:
    """`value` as the settings parser reads it back."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    return str(value)


# -- the reaper ----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Reaped:
    """A container the reaper removed, and why."""

    container: str
    session_id: str
    reason: str


def reap(
    config: settings.Settings, docker_config: DockerSettings | None = None
) -> list[Reaped]:
    """Remove this grid's containers that no live session or worker owns."""
    provisioner = DockerProvisioner(config, docker_config)
    try:
        return _reap(provisioner)
    finally:
        provisioner.close()


def _reap(provisioner: DockerProvisioner) -> list[Reaped]:
    label = f"{GRID_LABEL}={grid_label(provisioner.config.redis_url)}"
    try:
        containers = provisioner.engine.containers.list(
            all=True, filters={"label": label}
        )
    except (docker.errors.DockerException, requests.RequestException) as exc:
        log.warning(
            "reaper: the Docker engine at %s does not answer: %s",
            provisioner.docker.docker_host,
            exc,
        )
        return []
    reaped = []
    for container in containers:
        reason = leftover_reason(provisioner.redis, container)
        if reason and remove_container(container):
            session_id = container.labels.get(SESSION_LABEL, "")
            log.info("reaper removed container %s: %s", container.name, reason)
            if session_id:
                _end_session(provisioner, session_id, reason)
            reaped.append(Reaped(container.name or container.id, session_id, reason))
    return reaped


def _end_session(provisioner: DockerProvisioner, session_id: str, reason: str) -> None:
    """Record why a session whose container was reaped ended, if it was live."""
    registry.terminate(
        provisioner.redis,
        session_id,
        f"the reaper removed its container: {reason}",
        retention=provisioner.config.session_retention,
    )


def leftover_reason(client: redis.Redis, container: Container) -> str:
    """Why the reaper may remove `container`; '' if it may not."""
    if PROBE_LABEL in container.labels:
        return probe_reason(str(container.attrs.get("Created", "")), time.time())
    return orphan_reason(client, container.labels)


def probe_reason(created: str, now: float) -> str:
    """Why a probe container created at `created` (ISO 8601) counts as left
    behind at `now`; '' while its worker may still be running it."""
    try:
        age = now - datetime.datetime.fromisoformat(created).timestamp()
    except ValueError:
        return "a version probe left behind (of unknown age)"
    if age < PROBE_MAX_AGE:
        return ""
    return f"a version probe left behind ({age:.0f} s old)"


def orphan_reason(client: redis.Redis, labels: Mapping[str, str]) -> str:
    """Why a container with `labels` has no owner any more; '' if it has."""
    session_id = labels.get(SESSION_LABEL, "")
    state = registry.session(client, session_id).get("state")
    if state not in registry.LIVE_STATES:
        return f"its session {session_id} is {state or 'unknown to Redis'}"
    worker = labels.get(WORKER_LABEL, "")
    offer = client.get(registry.worker_key(worker))
    if offer is None:
        return f"its worker {worker} is gone (no heartbeat)"
    if session_id not in json.loads(str(offer)).get("sessions", []):
        return f"its worker {worker} no longer runs session {session_id}"
    return ""


def remove_container(container: Container) -> bool:
    """Remove `container`; False if it was gone already or could not go."""
    try:
        container.remove(force=True)
    except docker.errors.NotFound:
        return False
    except (docker.errors.APIError, requests.RequestException) as exc:
        log.warning(
            "could not remove container %s: %s; the reaper will remove it later",
            container.name,
            exc,
        )
        return False
    return True
