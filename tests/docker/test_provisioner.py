"""DockerProvisioner against a real engine: sessions in containers of the
node image, served by a real Chromium or Firefox, and every way a start fails.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import pathlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import docker
import docker.errors
import pytest
import requests

from app import registry, settings
from app.errors import SessionNotCreated
from app.provisioners import docker as docker_provisioner
from app.provisioners.docker import (
    BROWSER_LABEL,
    GRID_LABEL,
    IMAGE_SETTINGS,
    LOST,
    PROBE_LABEL,
    SESSION_LABEL,
    WORKER_LABEL,
    DockerNode,
    DockerProvisioner,
    DockerSettings,
    container_name,
    grid_label,
    node_environment,
    reap,
)
from tests import docker_harness
from tests.docker_harness import WORKER, gone, new_session
from tests.harness import wait_for

PAGE = "data:text/html,<title>in a container</title><p id=x>hello</p>"


def command(
    client: registry.redis.Redis, session_id: str, method: str, path: str, **body: Any
) -> Any:
    """Send a WebDriver command to the session's node, through its route."""
    address = registry.route(client, session_id)
    assert address, f"session {session_id} has no route"
    answer = requests.request(
        method,
        f"http://{address}/session/{session_id}{path}",
        json=body if method == "POST" else None,
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    return answer.json()["value"]


def health(node: DockerNode) -> str:
    node.container.reload()
    return str(node.container.attrs["State"].get("Health", {}).get("Status", ""))


@pytest.mark.slow
def test_chromium_session_in_a_container(
    provisioner: DockerProvisioner,
    redis_client: registry.redis.Redis,
    engine_client: docker.DockerClient,
) -> None:
    session_id = new_session(redis_client)
    node = provisioner.start(session_id, "chrome", {}, WORKER)
    try:
        # The node announced itself: the record runs, the route serves WebDriver.
        assert registry.session(redis_client, session_id)["state"] == registry.RUNNING
        command(redis_client, session_id, "POST", "/url", url=PAGE)
        assert command(redis_client, session_id, "GET", "/title") == "in a container"

        # The container is what the issue asks for.
        attrs = engine_client.api.inspect_container(node.container.id)
        host = attrs["HostConfig"]
        assert host["Init"] is True
        assert host["ShmSize"] == 1024**3
        assert host["NanoCpus"] == 10**9
        assert host["Memory"] == 1024**3
        assert host["NetworkMode"] == "host"
        labels = attrs["Config"]["Labels"]
        assert labels[GRID_LABEL] == grid_label(provisioner.config.redis_url)
        assert labels[WORKER_LABEL] == WORKER
        assert labels[SESSION_LABEL] == session_id
        assert labels[BROWSER_LABEL] == "chrome"
        assert attrs["Config"]["User"] == "webgrid"
        wait_for(lambda: health(node) == "healthy", 30, "a healthy container")

        # Deleting the session ends the node, and so the container.
        command(redis_client, session_id, "DELETE", "")
        assert node.wait(30) == 0
    finally:
        node.stop()
    assert gone(engine_client, node.name)
    record = registry.session(redis_client, session_id)
    assert record["state"] == registry.TERMINATED
    assert record["reason"] == "deleted by the client"


@pytest.mark.slow
def test_firefox_session_in_a_container(
    provisioner: DockerProvisioner,
    redis_client: registry.redis.Redis,
    engine_client: docker.DockerClient,
) -> None:
    session_id = new_session(redis_client, "firefox")
    node = provisioner.start(session_id, "firefox", {}, WORKER)
    try:
        command(redis_client, session_id, "POST", "/url", url=PAGE)
        found = command(
            redis_client, session_id, "POST", "/element", using="css selector",
            value="#x",
        )  # fmt: skip
        element = next(iter(found.values()))
        text = command(redis_client, session_id, "GET", f"/element/{element}/text")
        assert text == "hello"
    finally:
        node.stop()
    assert gone(engine_client, node.name)


@pytest.mark.slow
def test_stop_ends_the_session_and_removes_the_container(
    provisioner: DockerProvisioner,
    redis_client: registry.redis.Redis,
    engine_client: docker.DockerClient,
) -> None:
    session_id = new_session(redis_client)
    node = provisioner.start(session_id, "chrome", {}, WORKER)
    node.stop()
    assert gone(engine_client, node.name)
    assert node.wait(10) is not None
    record = registry.session(redis_client, session_id)
    assert record["state"] == registry.TERMINATED
    assert record["reason"] == "stopped by its worker"
    node.stop()  # a second stop, as the task's cleanup does, is harmless


@pytest.mark.slow
def test_headed_browsers_get_a_display_of_their_own(
    grid_config: settings.Settings,
    docker_config: DockerSettings,
    redis_client: registry.redis.Redis,
) -> None:
    """Two headed sessions side by side on the host network: each container's
    Xvfb must find a free display rather than collide on one."""
    headed = dataclasses.replace(grid_config, headless=False)
    provisioner = DockerProvisioner(headed, docker_config)
    nodes: list[DockerNode] = []
    try:
        for _ in range(2):
            session_id = new_session(redis_client)
            nodes.append(provisioner.start(session_id, "chrome", {}, WORKER))
            command(redis_client, session_id, "POST", "/url", url=PAGE)
            shot = command(redis_client, session_id, "GET", "/screenshot")
            assert len(shot) > 1000
    finally:
        for node in nodes:
            node.stop()
        provisioner.close()


def test_a_missing_image_is_named_with_how_to_build_it(
    grid_config: settings.Settings,
    docker_config: DockerSettings,
    redis_client: registry.redis.Redis,
) -> None:
    config = dataclasses.replace(docker_config, images={"chrome": "webgrid-none:9"})
    provisioner = DockerProvisioner(grid_config, config)
    with pytest.raises(SessionNotCreated) as caught:
        provisioner.start(new_session(redis_client), "chrome", {}, WORKER)
    provisioner.close()
    assert "'webgrid-none:9'" in caught.value.message
    assert "docker build --network host -t webgrid-none:9" in caught.value.message
    assert caught.value.code == "session not created"


@pytest.mark.parametrize(
    "address", ["unix:///nonexistent/docker.sock", "tcp://127.0.0.1:9"]
)
def test_an_unreachable_engine_is_named(
    grid_config: settings.Settings,
    docker_config: DockerSettings,
    redis_client: registry.redis.Redis,
    address: str,
) -> None:
    config = dataclasses.replace(docker_config, docker_host=address)
    provisioner = DockerProvisioner(grid_config, config)
    with pytest.raises(SessionNotCreated) as caught:
        provisioner.start(new_session(redis_client), "chrome", {}, WORKER)
    provisioner.close()
    assert f"the Docker engine at {address} does not answer" in caught.value.message
    assert "DOCKER_HOST" in caught.value.message


@pytest.mark.slow
def test_a_container_that_exits_during_start_shows_its_logs(
    provisioner: DockerProvisioner,
    redis_client: registry.redis.Redis,
    engine_client: docker.DockerClient,
) -> None:
    session_id = new_session(redis_client)
    broken = {"goog:chromeOptions": {"binary": "/nonexistent/chromium"}}
    with pytest.raises(SessionNotCreated) as caught:
        provisioner.start(session_id, "chrome", broken, WORKER)
    message = caught.value.message
    assert "exited with code 1 while its node started" in message
    assert "its last log lines:" in message
    # A line the node printed inside the container, not only the record.
    assert f"node {session_id} could not start" in message
    assert gone(engine_client, container_name(session_id))


@pytest.mark.slow
def test_a_session_withdrawn_during_start_stops_its_container(
    provisioner: DockerProvisioner,
    redis_client: registry.redis.Redis,
    engine_client: docker.DockerClient,
) -> None:
    session_id = new_session(redis_client)
    registry.terminate(redis_client, session_id, "client gone", retention=60)
    with pytest.raises(SessionNotCreated) as caught:
        provisioner.start(session_id, "chrome", {}, WORKER)
    assert "ended while its container" in caught.value.message
    assert "client gone" in caught.value.message
    assert gone(engine_client, container_name(session_id))


@pytest.fixture(scope="module")
def stuck_image(engine_client: docker.DockerClient, node_image: str) -> str:
    """The node image whose node never starts: it only sleeps."""
    dockerfile = f'FROM {node_image}\nENTRYPOINT ["sleep", "infinity"]\n'
    return docker_harness.build_derived(
        engine_client, "webgrid-node-stuck:test", dockerfile
    )


@pytest.mark.slow
def test_a_node_that_never_gets_ready_is_stopped(
    grid_config: settings.Settings,
    docker_config: DockerSettings,
    redis_client: registry.redis.Redis,
    engine_client: docker.DockerClient,
    stuck_image: str,
) -> None:
    quick = dataclasses.replace(grid_config, startup_timeout=1.0)
    config = dataclasses.replace(docker_config, default_image=stuck_image)
    provisioner = DockerProvisioner(quick, config)
    session_id = new_session(redis_client)
    with pytest.raises(SessionNotCreated) as caught:
        provisioner.start(session_id, "chrome", {}, WORKER)
    provisioner.close()
    assert "was not ready within 11 s" in caught.value.message
    assert gone(engine_client, container_name(session_id))


def test_a_missing_network_says_how_to_create_it(
    grid_config: settings.Settings,
    docker_config: DockerSettings,
    redis_client: registry.redis.Redis,
    engine_client: docker.DockerClient,
) -> None:
    config = dataclasses.replace(docker_config, network="webgrid-no-such-net")
    provisioner = DockerProvisioner(grid_config, config)
    session_id = new_session(redis_client)
    with pytest.raises(SessionNotCreated) as caught:
        provisioner.start(session_id, "chrome", {}, WORKER)
    provisioner.close()
    assert "webgrid-no-such-net" in caught.value.message
    assert "docker network create webgrid-no-such-net" in caught.value.message
    assert gone(engine_client, container_name(session_id))


def test_the_offer_names_what_the_image_holds(provisioner: DockerProvisioner) -> None:
    offered = {b["browserName"]: b for b in provisioner.offer(("chrome", "firefox"))}
    assert set(offered) == {"chrome", "firefox"}
    for browser in offered.values():
        assert browser["browserVersion"].split(".")[0].isdigit()
        assert browser["platformName"] == "linux"


def test_the_offer_leaves_out_a_browser_without_image(
    grid_config: settings.Settings, docker_config: DockerSettings
) -> None:
    config = dataclasses.replace(docker_config, images={"firefox": "webgrid-none:9"})
    provisioner = DockerProvisioner(grid_config, config)
    offered = provisioner.offer(("chrome", "firefox"))
    provisioner.close()
    assert [b["browserName"] for b in offered] == ["chrome"]


def test_node_environment_carries_the_grid_settings() -> None:
    config = settings.Settings(
        redis_url="redis://127.0.0.1:7/0",
        headless=False,
        idle_timeout=12.5,
        browsers=("chrome", "firefox"),
        chromedriver="/opt/host-only/chromedriver",
    )
    env = node_environment(
        config,
        session_id="s1",
        browser="firefox",
        capabilities={"browserName": "firefox"},
        worker="w1",
        host="10.1.2.3",
    )
    # Every setting reaches the node as it is, but for the image's own paths.
    parsed = settings.from_environ(env)
    own = {name: getattr(config, name) for name in IMAGE_SETTINGS}
    assert dataclasses.replace(parsed, host=config.host, **own) == config
    assert parsed.host == "10.1.2.3"
    assert parsed.chromedriver == settings.Settings().chromedriver
    assert env["WEBGRID_NODE_PARENT"] == "0"
    assert env["WEBGRID_NODE_WORKER"] == "w1"
    assert json.loads(env["WEBGRID_NODE_CAPABILITIES"]) == {"browserName": "firefox"}


@pytest.fixture
def relay(
    docker_engine: docker_harness.Engine, tmp_path: pathlib.Path
) -> Iterator[docker_harness.SocketRelay]:
    """The engine behind a relay that a test can cut."""
    assert docker_engine.url.startswith("unix://"), "the relay needs a unix socket"
    target = docker_engine.url.removeprefix("unix://")
    relay = docker_harness.SocketRelay(target, str(tmp_path / "relay.sock"))
    yield relay
    relay.close()


@pytest.mark.slow
def test_an_engine_lost_during_a_session_is_reported_and_left_to_the_reaper(
    grid_config: settings.Settings,
    docker_config: DockerSettings,
    redis_client: registry.redis.Redis,
    engine_client: docker.DockerClient,
    relay: docker_harness.SocketRelay,
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = dataclasses.replace(docker_config, docker_host=relay.url)
    provisioner = DockerProvisioner(grid_config, config)
    session_id = new_session(redis_client)
    node = provisioner.start(session_id, "chrome", {}, WORKER)

    relay.close()
    assert node.wait(10) == LOST
    assert "(its logs could not be read:" in node.last_logs()
    with caplog.at_level(logging.WARNING, logger="app.provisioners.docker"):
        node.stop()
    assert "the reaper will remove it" in caplog.text
    provisioner.close()

    # The container still runs; once its session ends, the reaper removes it.
    assert not gone(engine_client, node.name)
    registry.terminate(redis_client, session_id, "client gone", retention=60)
    reaped = reap(grid_config, docker_config)
    assert [r.session_id for r in reaped] == [session_id]
    assert gone(engine_client, node.name)


@pytest.mark.slow
def test_a_container_that_cannot_start_is_removed(
    grid_config: settings.Settings,
    docker_config: DockerSettings,
    redis_client: registry.redis.Redis,
    engine_client: docker.DockerClient,
    node_image: str,
) -> None:
    # The engine finds the image's user missing only when it starts it.
    dockerfile = f"FROM {node_image}\nUSER nosuchuser\n"
    tag = docker_harness.build_derived(
        engine_client, "webgrid-node-unstartable:test", dockerfile
    )
    provisioner = DockerProvisioner(
        grid_config, dataclasses.replace(docker_config, default_image=tag)
    )
    session_id = new_session(redis_client)
    with pytest.raises(SessionNotCreated) as caught:
        provisioner.start(session_id, "chrome", {}, WORKER)
    provisioner.close()
    assert f"refused the container of session {session_id}" in caught.value.message
    assert "nosuchuser" in caught.value.message
    assert gone(engine_client, container_name(session_id))


def test_the_offer_leaves_out_an_image_without_the_browser(
    grid_config: settings.Settings, docker_config: DockerSettings
) -> None:
    bare = dataclasses.replace(
        docker_config, images={"firefox": docker_harness.BASE_IMAGE}
    )
    provisioner = DockerProvisioner(grid_config, bare)
    offered = provisioner.offer(("chrome", "firefox"))
    provisioner.close()
    assert [b["browserName"] for b in offered] == ["chrome"]


def containers_from(
    engine_client: docker.DockerClient, image: str, *, running: bool = False
) -> list[str]:
    """The containers of `image`: every one, or only those running."""
    found = engine_client.containers.list(all=not running, filters={"ancestor": image})
    return [c.name for c in found]


@pytest.fixture(scope="module")
def no_browser_image(engine_client: docker.DockerClient) -> str:
    """The bare base image under a name of its own, so that its containers
    are told apart from those of the images built on it."""
    dockerfile = f"FROM {docker_harness.BASE_IMAGE}\nLABEL org.webgrid.test=bare\n"
    return docker_harness.build_derived(
        engine_client, "webgrid-no-browser:test", dockerfile
    )


@pytest.fixture(scope="module")
def broken_browsers_image(engine_client: docker.DockerClient) -> str:
    """An image whose Chromium fails at once and whose Firefox never ends."""
    dockerfile = (
        f"FROM {docker_harness.BASE_IMAGE}\n"
        "RUN printf '#!/bin/sh\\necho no display here >&2\\nexit 3\\n' "
        "> /usr/bin/chromium \\\n"
        " && printf '#!/bin/sh\\nexec sleep 600\\n' > /usr/bin/firefox-esr \\\n"
        " && chmod +x /usr/bin/chromium /usr/bin/firefox-esr\n"
    )
    return docker_harness.build_derived(
        engine_client, "webgrid-broken-browsers:test", dockerfile
    )


@pytest.fixture
def failed_offer(
    grid_config: settings.Settings,
    docker_config: DockerSettings,
    engine_client: docker.DockerClient,
    caplog: pytest.LogCaptureFixture,
) -> Callable[[str, str], str]:
    """Offer a browser from an image that cannot run it; what the worker
    logged. Whatever went wrong, no container of the image may stay."""

    def offer(browser: str, image: str) -> str:
        config = dataclasses.replace(docker_config, images={browser: image})
        provisioner = DockerProvisioner(grid_config, config)
        with caplog.at_level(logging.WARNING, logger="app.provisioners.docker"):
            offered = provisioner.offer((browser,))
        provisioner.close()
        assert offered == []
        assert containers_from(engine_client, image) == []
        return caplog.text

    return offer


def test_a_probe_that_cannot_start_leaves_no_container(
    failed_offer: Callable[[str, str], str], no_browser_image: str
) -> None:
    logged = failed_offer("chrome", no_browser_image)
    # The engine created the probe, then found no binary to start in it.
    assert (
        f"/usr/bin/chromium --version in image {no_browser_image!r} could not run"
    ) in logged
    assert "no such file or directory" in logged
    assert "give chrome an image that holds it (WEBGRID_DOCKER_IMAGE)" in logged


def test_a_probe_that_fails_is_named_with_its_output(
    failed_offer: Callable[[str, str], str], broken_browsers_image: str
) -> None:
    logged = failed_offer("chrome", broken_browsers_image)
    assert (
        f"/usr/bin/chromium --version in image {broken_browsers_image!r} "
        "exited with code 3: no display here"
    ) in logged


def test_a_probe_that_never_ends_is_cut_off(
    failed_offer: Callable[[str, str], str],
    broken_browsers_image: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(docker_provisioner, "PROBE_TIMEOUT", 1)
    began = time.monotonic()
    logged = failed_offer("firefox", broken_browsers_image)
    assert time.monotonic() - began < 30
    assert (
        f"/usr/bin/firefox-esr --version in image {broken_browsers_image!r} "
        "did not finish within 1 s"
    ) in logged


@pytest.mark.slow
def test_a_probe_whose_engine_is_lost_is_left_to_the_reaper(
    grid_config: settings.Settings,
    docker_config: DockerSettings,
    engine_client: docker.DockerClient,
    relay: docker_harness.SocketRelay,
    broken_browsers_image: str,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    image = broken_browsers_image
    config = dataclasses.replace(
        docker_config, docker_host=relay.url, images={"firefox": image}
    )
    provisioner = DockerProvisioner(grid_config, config)
    offered: list[dict[str, str]] = []
    probing = threading.Thread(
        target=lambda: offered.extend(provisioner.offer(("firefox",)))
    )
    try:
        # The engine goes away while the probe runs: it cannot be removed.
        with caplog.at_level(logging.WARNING, logger="app.provisioners.docker"):
            probing.start()
            wait_for(
                lambda: containers_from(engine_client, image, running=True),
                30,
                "the probe running",
            )
            relay.close()
            probing.join(30)
        assert not probing.is_alive()
        assert offered == []
        assert (
            f"/usr/bin/firefox-esr --version in image {image!r} lost the Docker engine"
        ) in caplog.text
        assert "the reaper will remove it later" in caplog.text

        # It carries the labels the reaper looks for ...
        [left] = engine_client.containers.list(all=True, filters={"ancestor": image})
        assert left.labels[GRID_LABEL] == grid_label(grid_config.redis_url)
        assert left.labels[PROBE_LABEL] == "firefox"
        # ... which keeps a young probe, some worker may still wait for it ...
        assert reap(grid_config, docker_config) == []
        # ... and removes one older than any probe runs.
        monkeypatch.setattr(docker_provisioner, "PROBE_MAX_AGE", 0.0)
        reaped = reap(grid_config, docker_config)
        assert [(r.container, r.session_id) for r in reaped] == [(left.name, "")]
        assert reaped[0].reason.startswith("a version probe left behind (")
        assert containers_from(engine_client, image) == []
    finally:
        provisioner.close()
        docker_harness.remove_containers(engine_client, PROBE_LABEL)


def test_the_grid_label_leaves_out_credentials() -> None:
    assert grid_label("redis://:secret@redis.local:6380/2") == (
        "redis://redis.local:6380/2"
    )
    assert grid_label("unix:///run/redis.sock") == "unix:///run/redis.sock"
