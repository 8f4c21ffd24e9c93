"""A real Docker engine and the node image, for the tests that need them.

Where no engine answers, the harness starts a `dockerd` of its own (as root)
with its own data root, exec root, socket and pid file, and with
`--iptables=false --bridge=none` so that it leaves the host's network alone;
containers then use the host's network. It stops that daemon afterwards.

No registry can be reached, so the Dockerfile's base image is made here: a
minimal bookworm root from `debootstrap`, imported as `debian:bookworm-slim`,
that reaches Debian and PyPI the way this host does (its mirrors, its apt
options, the CA bundle its pip trusts). The node image is then built from
`node_image/Dockerfile`. Each image is labelled with a hash of what it is
made from, is kept in the daemon's data root under the cache folder, and is
made again only when that hash changes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import logging
import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from typing import TextIO

import docker
import docker.errors
import requests
from docker.models.containers import Container

from app import registry

log = logging.getLogger(__name__)

ROOT = pathlib.Path(__file__).resolve().parents[1]
BASE_IMAGE = "debian:bookworm-slim"
NODE_IMAGE = "webgrid-node:test"
DOCKERFILE = "node_image/Dockerfile"
HASH_LABEL = "org.webgrid.source-hash"
BASE_LABEL = "org.webgrid.base-recipe"
# Raise when the way the base image is made changes, to make it again.
BASE_RECIPE = 1
HOST_CA = "/etc/ssl/webgrid-host-ca.pem"
# Everything the node image is built from, relative to the repository root.
IMAGE_SOURCES = ("app", "node_image", ".dockerignore")
API_VERSION = "1.41"
DEFAULT_SOCKET = "unix:///var/run/docker.sock"
DAEMON_START_TIMEOUT = 60.0
DAEMON_STOP_TIMEOUT = 30.0
# Apt options of this host that the base image must share to reach the same
# mirror (a snapshot mirror, for one, needs the date checks off).
APT_OPTIONS = (
    "Acquire::Check-Valid-Until",
    "Acquire::Check-Date",
    "Acquire::http::Proxy",
    "Acquire::https::Proxy",
)


class HarnessError(RuntimeError):
    """The harness could not provide an engine or an image."""


def cache_dir() -> pathlib.Path:
    """Where the engine's data root and build logs are kept between runs.

    WEBGRID_DOCKER_CACHE, else /var/cache/webgrid-docker for root (so that a
    fresh clone of the repository, as in CI, reuses it), else .cache/docker.
    """
    chosen = os.environ.get("WEBGRID_DOCKER_CACHE")
    if chosen:
        return pathlib.Path(chosen)
    if os.geteuid() == 0:
        return pathlib.Path("/var/cache/webgrid-docker")
    return ROOT / ".cache" / "docker"


# -- the engine ----------------------------------------------------------------


@dataclasses.dataclass
class Engine:
    """A Docker engine the tests may use; `process` is set when we started it."""

    url: str
    process: subprocess.Popen[bytes] | None = None
    exec_root: pathlib.Path | None = None
    data_root: pathlib.Path | None = None
    log_path: pathlib.Path | None = None

    def client(self) -> docker.DockerClient:
        return docker.DockerClient(base_url=self.url, version=API_VERSION)

    def stop(self) -> None:
        """Stop the daemon if we started it, and remove its exec root."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(DAEMON_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                log.warning("dockerd ignored SIGTERM for 30 s; killing it")
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        # NOTE: dockerd leaves mounts behind even on a clean stop (its data
        # root bound onto itself, the host's netns under the exec root).
        for root in filter(None, (self.data_root, self.exec_root)):
            unmount_below(root)
        if self.exec_root is not None:
            shutil.rmtree(self.exec_root, ignore_errors=True)


def mounts_below(root: pathlib.Path) -> list[str]:
    """Mount points at or below `root`, deepest first."""
    prefix = str(root.resolve())
    points = []
    for line in pathlib.Path("/proc/self/mounts").read_text().splitlines():
        point = line.split()[1].replace("\\040", " ")
        if point == prefix or point.startswith(prefix + "/"):
            points.append(point)
    return sorted(points, key=len, reverse=True)


def unmount_below(root: pathlib.Path) -> None:
    for point in mounts_below(root):
        done = subprocess.run(["umount", point], capture_output=True, text=True)
        if done.returncode != 0:
            log.warning("could not unmount %s: %s", point, done.stderr.strip())


def answers(url: str) -> bool:
    """Whether a Docker engine answers at `url`."""
    client = docker.DockerClient(base_url=url, version=API_VERSION, timeout=5)
    try:
        return bool(client.ping())
    except (docker.errors.DockerException, requests.RequestException):
        return False
    finally:
        client.close()


@contextlib.contextmanager
def engine() -> Iterator[Engine]:
    """A reachable engine: DOCKER_HOST's, the system's, or one started here."""
    for url in filter(None, (os.environ.get("DOCKER_HOST"), DEFAULT_SOCKET)):
        if answers(url):
            log.info("using the Docker engine at %s", url)
            yield Engine(url)
            return
    started = start_daemon(cache_dir())
    try:
        yield started
    finally:
        started.stop()


def start_daemon(cache: pathlib.Path) -> Engine:
    """Start a private dockerd whose data lives under `cache`."""
    if os.geteuid() != 0:
        raise HarnessError(
            "no Docker engine answers (DOCKER_HOST or /var/run/docker.sock) and "
            "starting one needs root: run the tests as root, or start Docker"
        )
    ensure_commands({"dockerd": "docker.io"})
    cache.mkdir(parents=True, exist_ok=True)
    # NOTE: the exec root holds containerd's sockets, whose paths must stay
    # under the kernel's 108-byte limit: keep it short, in /tmp.
    exec_root = pathlib.Path(tempfile.mkdtemp(prefix="webgrid-dockerd-"))
    sock = exec_root / "docker.sock"
    log_path = cache / "dockerd.log"
    command = [
        "dockerd",
        "--data-root", str(cache / "data"),
        "--exec-root", str(exec_root),
        "--host", f"unix://{sock}",
        "--pidfile", str(cache / "dockerd.pid"),
        "--iptables=false",
        "--bridge=none",
    ]  # fmt: skip
    with open(log_path, "ab") as out:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    started = Engine(f"unix://{sock}", process, exec_root, cache / "data", log_path)
    try:
        _wait_daemon(started)
    except BaseException:
        started.stop()
        raise
    log.info("started dockerd (pid %d) at %s", process.pid, started.url)
    return started


def _wait_daemon(started: Engine) -> None:
    assert started.process is not None and started.log_path is not None
    deadline = time.monotonic() + DAEMON_START_TIMEOUT
    while time.monotonic() < deadline:
        if started.process.poll() is not None:
            raise HarnessError(
                f"dockerd exited with code {started.process.returncode} at "
                f"start; its log ({started.log_path}) ends with:\n"
                + tail(started.log_path)
            )
        if answers(started.url):
            return
        time.sleep(0.2)
    raise HarnessError(
        f"dockerd did not answer at {started.url} within "
        f"{DAEMON_START_TIMEOUT:g} s; see {started.log_path}"
    )


def tail(path: pathlib.Path, lines: int = 20) -> str:
    try:
        text = path.read_bytes()[-8000:].decode(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def ensure_commands(wanted: dict[str, str]) -> None:
    """apt-get install the package of each command that is not on PATH."""
    missing = sorted({pkg for cmd, pkg in wanted.items() if not shutil.which(cmd)})
    if not missing:
        return
    log.info("installing %s with apt-get", ", ".join(missing))
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends"]
    for command in (["apt-get", "update", "-q"], [*install, *missing]):
        done = subprocess.run(command, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise HarnessError(
                f"{' '.join(command)} failed ({done.returncode}): {done.stderr[-2000:]}"
            )


# -- the base image --------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class AptSource:
    """One Debian entry of the host's apt sources."""

    uri: str
    suites: tuple[str, ...]
    components: tuple[str, ...]


def host_sources(folder: pathlib.Path = pathlib.Path("/etc/apt")) -> list[AptSource]:
    """The host's bookworm entries, from sources.list and sources.list.d."""
    found: list[AptSource] = []
    for path in sorted([folder / "sources.list", *folder.glob("sources.list.d/*")]):
        if not path.is_file():
            continue
        text = path.read_text(errors="replace")
        if path.suffix == ".sources":
            found += _deb822_sources(text)
        elif path.suffix == ".list" or path.name == "sources.list":
            found += _one_line_sources(text)
    return [s for s in found if any(x.startswith("bookworm") for x in s.suites)]


def _deb822_sources(text: str) -> list[AptSource]:
    entries = []
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line.startswith("#") or ":" not in line:
                continue
            name, _, value = line.partition(":")
            fields[name.strip().lower()] = value.strip()
        if "deb" not in fields.get("types", "").split():
            continue
        for uri in fields.get("uris", "").split():
            entries.append(
                AptSource(
                    uri,
                    tuple(fields.get("suites", "").split()),
                    tuple(fields.get("components", "").split()),
                )
            )
    return entries


def _one_line_sources(text: str) -> list[AptSource]:
    entries = []
    for line in text.splitlines():
        words = re.sub(r"\[[^]]*\]", "", line.split("#", 1)[0]).split()
        if len(words) >= 3 and words[0] == "deb":
            entries.append(AptSource(words[1], (words[2],), tuple(words[3:])))
    return entries


def debian_mirror(sources: Iterable[AptSource]) -> str:
    """The mirror that serves the bookworm suite itself."""
    for source in sources:
        if "bookworm" in source.suites:
            return source.uri
    raise HarnessError(
        "no apt source of this host serves Debian bookworm; debootstrap needs "
        "one (add it to /etc/apt/sources.list.d/)"
    )


def base_sources_file(sources: Iterable[AptSource]) -> str:
    """The base image's debian.sources: the host's bookworm mirrors."""
    stanzas = []
    for source in sources:
        stanzas.append(
            "Types: deb\n"
            f"URIs: {source.uri}\n"
            f"Suites: {' '.join(source.suites)}\n"
            f"Components: {' '.join(source.components) or 'main'}\n"
            "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
        )
    return "\n".join(stanzas)


def host_apt_options() -> str:
    """The host's values of APT_OPTIONS, as an apt.conf snippet."""
    lines = []
    for option in APT_OPTIONS:
        done = subprocess.run(
            ["apt-config", "shell", "VALUE", option], capture_output=True, text=True
        )
        found = re.match(r"VALUE='(.*)'", done.stdout.strip())
        if found:
            lines.append(f'{option} "{found.group(1)}";')
    return "\n".join(lines) + "\n"


def _label(client: docker.DockerClient, image: str, label: str) -> str | None:
    """The value of `label` on `image`; None when the image is absent."""
    try:
        labels = client.images.get(image).labels or {}
    except docker.errors.ImageNotFound:
        return None
    return str(labels.get(label, ""))


@dataclasses.dataclass(frozen=True)
class HostAccess:
    """How this host reaches Debian and PyPI, which the base image copies:
    its bookworm mirrors, its apt options, and the CA bundle pip trusts (a
    network that inspects TLS signs with a CA of its own)."""

    sources: tuple[AptSource, ...]
    apt_options: str
    ca_bundle: bytes

    def digest(self) -> str:
        text = f"{BASE_RECIPE}\n{base_sources_file(self.sources)}{self.apt_options}"
        return hashlib.sha256(text.encode() + self.ca_bundle).hexdigest()


def host_access() -> HostAccess:
    cert = pip_cert()
    return HostAccess(
        tuple(host_sources()),
        host_apt_options(),
        pathlib.Path(cert).read_bytes() if cert else b"",
    )


def pip_cert() -> str:
    """The CA bundle this host's pip is configured with, or ''."""
    if os.environ.get("PIP_CERT"):
        return os.environ["PIP_CERT"]
    done = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"],
        capture_output=True,
        text=True,
    )
    found = re.search(r"^[\w:]*\.cert='([^']+)'", done.stdout, re.MULTILINE)
    return found.group(1) if found else ""


def ensure_base_image(client: docker.DockerClient, cache: pathlib.Path) -> float:
    """Make BASE_IMAGE with debootstrap unless it is up to date; seconds taken."""
    access = host_access()
    if _label(client, BASE_IMAGE, BASE_LABEL) == access.digest():
        return 0.0
    began = time.monotonic()
    rootfs = minimal_root(cache, debian_mirror(access.sources))
    changes = _configure_access(rootfs, access)
    work = pathlib.Path(tempfile.mkdtemp(prefix="webgrid-import-", dir=cache))
    tarball = work / "rootfs.tar"
    try:
        _run(["tar", "-C", str(rootfs), "-cf", str(tarball), "."], "tar")
        repository, _, tag = BASE_IMAGE.partition(":")
        client.api.import_image_from_file(
            str(tarball),
            repository,
            tag,
            changes=[*changes, f"LABEL {BASE_LABEL}={access.digest()}"],
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    took = time.monotonic() - began
    log.info("imported %s from debootstrap in %.0f s", BASE_IMAGE, took)
    return took


def minimal_root(cache: pathlib.Path, mirror: str) -> pathlib.Path:
    """A minimal bookworm root from `mirror`, made once and kept in `cache`."""
    name = hashlib.sha256(mirror.encode()).hexdigest()[:12]
    rootfs = cache / f"rootfs-bookworm-{name}"
    done = rootfs.with_suffix(".done")
    if done.exists():
        return rootfs
    ensure_commands({"debootstrap": "debootstrap"})
    shutil.rmtree(rootfs, ignore_errors=True)
    log_path = cache / "debootstrap.log"
    command = ["debootstrap", "--variant=minbase", "bookworm", str(rootfs), mirror]
    with open(log_path, "wb") as out:
        finished = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT)
    if finished.returncode != 0:
        shutil.rmtree(rootfs, ignore_errors=True)
        raise HarnessError(
            f"debootstrap from {mirror} failed ({finished.returncode}); "
            f"{log_path} ends with:\n{tail(log_path)}"
        )
    done.touch()
    return rootfs


def _configure_access(rootfs: pathlib.Path, access: HostAccess) -> list[str]:
    """Give the root the host's mirrors, apt options and CA bundle, the way
    the real slim image has Debian's; return the image changes to apply."""
    apt = rootfs / "etc" / "apt"
    (apt / "sources.list").unlink(missing_ok=True)
    (apt / "sources.list.d" / "debian.sources").write_text(
        base_sources_file(access.sources)
    )
    (apt / "apt.conf.d" / "90webgrid-host").write_text(access.apt_options)
    for leftover in ("var/lib/apt/lists", "var/cache/apt/archives"):
        for path in (rootfs / leftover).glob("*"):
            if path.is_file():
                path.unlink()
    (rootfs / HOST_CA.lstrip("/")).unlink(missing_ok=True)
    if not access.ca_bundle:
        return []
    bundle = rootfs / HOST_CA.lstrip("/")
    bundle.parent.mkdir(parents=True, exist_ok=True)
    bundle.write_bytes(access.ca_bundle)
    return [f"ENV PIP_CERT={HOST_CA}"]


def _run(command: list[str], what: str) -> None:
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise HarnessError(f"{what} failed ({done.returncode}): {done.stderr[-2000:]}")


# -- the node image ----------------------------------------------------------------


def source_hash(root: pathlib.Path = ROOT) -> str:
    """A hash of every file the node image is built from, names included."""
    digest = hashlib.sha256()
    for path in sorted(_image_files(root)):
        digest.update(str(path.relative_to(root)).encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def _image_files(root: pathlib.Path) -> Iterator[pathlib.Path]:
    for name in IMAGE_SOURCES:
        top = root / name
        candidates = [top] if top.is_file() else top.rglob("*")
        for path in candidates:
            cached = "__pycache__" in path.parts or path.suffix == ".pyc"
            if path.is_file() and not cached:
                yield path


def node_image_hash(client: docker.DockerClient, root: pathlib.Path = ROOT) -> str:
    """What the node image is built from: its sources and its base image."""
    base = client.images.get(BASE_IMAGE).id
    return hashlib.sha256(f"{source_hash(root)} {base}".encode()).hexdigest()


def ensure_node_image(
    client: docker.DockerClient, cache: pathlib.Path, name: str = NODE_IMAGE
) -> float:
    """Build the node image unless it is up to date; seconds it took."""
    wanted = node_image_hash(client)
    if _label(client, name, HASH_LABEL) == wanted:
        return 0.0
    began = time.monotonic()
    log_path = cache / "node-image-build.log"
    with open(log_path, "w", buffering=1) as out:
        error = _build(client, name, wanted, out)
    if error:
        raise HarnessError(
            f"building {name} failed: {error}; {log_path} ends with:\n" + tail(log_path)
        )
    took = time.monotonic() - began
    log.info("built %s in %.0f s", name, took)
    return took


def _build(client: docker.DockerClient, name: str, source: str, out: TextIO) -> str:
    """Run the build, writing its output to `out`; the error, if any."""
    stream = client.api.build(
        path=str(ROOT),
        dockerfile=DOCKERFILE,
        tag=name,
        labels={HASH_LABEL: source},
        network_mode="host",
        buildargs=_proxy_arguments(),
        rm=True,
        forcerm=True,
        decode=True,
    )
    for chunk in stream:
        if "stream" in chunk:
            out.write(chunk["stream"])
        if "error" in chunk:
            out.write(json.dumps(chunk) + "\n")
            return str(chunk["error"]).strip()
    return ""


def _proxy_arguments() -> dict[str, str]:
    """The host's proxy variables, which docker build takes as arguments."""
    names = ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY")
    return {
        name: os.environ[name]
        for upper in names
        for name in (upper, upper.lower())
        if os.environ.get(name)
    }


def build_derived(client: docker.DockerClient, tag: str, dockerfile: str) -> str:
    """Build `tag` from `dockerfile` alone: no context, no network.

    NOTE: docker-py keeps the intermediate containers of a build unless told
    to remove them (its `rm` defaults to False, unlike `docker build`).
    """
    client.images.build(
        fileobj=io.BytesIO(dockerfile.encode()),
        tag=tag,
        rm=True,
        forcerm=True,
        network_mode="none",
    )
    return tag


# -- leaks -------------------------------------------------------------------------


def remove_containers(client: docker.DockerClient, label: str) -> int:
    """Force-remove every container carrying `label`; how many."""
    return _remove(client.containers.list(all=True, filters={"label": label}))


def _remove(containers: Iterable[Container]) -> int:
    removed = 0
    for container in containers:
        with contextlib.suppress(docker.errors.NotFound):
            container.remove(force=True)
            removed += 1
    return removed


def container_ids(client: docker.DockerClient) -> set[str]:
    """The ids of every container on the engine, running or not."""
    return {c.id for c in client.containers.list(all=True, sparse=True) if c.id}


def check_leftovers(
    client: docker.DockerClient, before: set[str], *, remove: bool
) -> None:
    """Raise `HarnessError` naming every container not in `before`.

    With `remove` (a daemon of our own, whose data root is kept between runs)
    they are removed as well, so that the next run starts clean; on a shared
    engine they stay for a person to look at.
    """
    left = [c for c in client.containers.list(all=True) if c.id not in before]
    if not left:
        return
    named = "; ".join(_describe(c) for c in left)
    if remove:
        _remove(left)
        then = "they are removed now"
    else:
        then = "look at them, then remove them with docker rm -f"
    raise HarnessError(
        f"{len(left)} container(s) were left on the engine: {named}; whatever "
        f"made them leaks containers ({then})"
    )


def _describe(container: Container) -> str:
    config = container.attrs.get("Config") or {}
    command = [*(config.get("Entrypoint") or []), *(config.get("Cmd") or [])]
    return (
        f"{container.name} ({container.status}, image {config.get('Image')}, "
        f"created {str(container.attrs.get('Created'))[:19]}, "
        f"runs {' '.join(command)!r})"
    )


# -- sessions for the provisioner's tests ------------------------------------------

WORKER = "test-worker@docker"


def new_session(client: registry.redis.Redis, browser: str = "chrome") -> str:
    """Record a session as a worker that claimed it would: provisioning."""
    session_id = str(uuid.uuid4())
    registry.create_session(client, session_id, browser, {"browserName": browser})
    registry.transition(
        client,
        session_id,
        registry.PROVISIONING,
        allowed=(registry.QUEUED,),
        worker=WORKER,
    )
    return session_id


def gone(engine: docker.DockerClient, name: str) -> bool:
    """Whether the container `name` no longer exists."""
    try:
        engine.containers.get(name)
    except docker.errors.NotFound:
        return True
    return False


class SocketRelay:
    """A unix socket that forwards to another one. Closing it cuts every
    connection through it, as an engine that went away would."""

    def __init__(self, target: str, path: str) -> None:
        self.target = target
        self.path = path
        self.url = f"unix://{path}"
        self._sockets: list[socket.socket] = []
        self._listener = socket.socket(socket.AF_UNIX)
        self._listener.bind(path)
        self._listener.listen()
        threading.Thread(target=self._accept, name="relay", daemon=True).start()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        for sock in list(self._sockets):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.socket(socket.AF_UNIX)
            upstream.connect(self.target)
            self._sockets += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pump, args=(source, sink), daemon=True).start()


def _pump(source: socket.socket, sink: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            sink.sendall(data)
    with contextlib.suppress(OSError):
        sink.shutdown(socket.SHUT_WR)
