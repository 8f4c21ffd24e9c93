"""Fixtures of the tests against a real Docker engine and the node image.

The engine is the one DOCKER_HOST or /var/run/docker.sock names, or a
dockerd started for the session (see tests/docker_harness.py). Nothing here
skips: where no engine can be had, the tests fail saying why.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator

import docker
import pytest

from app import embedded_redis, registry, settings
from app.provisioners.docker import (
    GRID_LABEL,
    DockerProvisioner,
    DockerSettings,
    grid_label,
)
from tests import docker_harness

log = logging.getLogger(__name__)


@pytest.fixture(scope="session")
def docker_engine() -> Iterator[docker_harness.Engine]:
    """The engine; a container left on it at the end fails the run."""
    with (
        docker_harness.engine() as engine,
        contextlib.closing(engine.client()) as client,
    ):
        # NOTE: on a daemon of our own any container is a leak, of this run
        # or of an earlier one that was killed; a shared one has others'.
        ours = engine.process is not None
        before = set() if ours else docker_harness.container_ids(client)
        yield engine
        docker_harness.check_leftovers(client, before, remove=ours)


@pytest.fixture(scope="session")
def engine_client(
    docker_engine: docker_harness.Engine,
) -> Iterator[docker.DockerClient]:
    client = docker_engine.client()
    yield client
    client.close()


@pytest.fixture(scope="session")
def node_image(engine_client: docker.DockerClient) -> str:
    """The node image, built (or found up to date) once per test session."""
    cache = docker_harness.cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    base = docker_harness.ensure_base_image(engine_client, cache)
    build = docker_harness.ensure_node_image(engine_client, cache)
    log.info("base image: %.0f s, node image: %.0f s (0: cached)", base, build)
    return docker_harness.NODE_IMAGE


@pytest.fixture(scope="session")
def redis_url(engine_client: docker.DockerClient) -> Iterator[str]:
    """A Redis for the session; no container of its grid may outlive it."""
    with embedded_redis.serve() as url:
        yield url
        label = f"{GRID_LABEL}={grid_label(url)}"
        left = docker_harness.remove_containers(engine_client, label)
        assert left == 0, f"{left} container(s) of the test grid were left"


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[registry.redis.Redis]:
    client = registry.connect(redis_url)
    yield client
    client.close()


@pytest.fixture
def worker_heartbeat(redis_client: registry.redis.Redis) -> Iterator[str]:
    """The test worker's heartbeat: a node ends itself once it is gone."""
    key = registry.worker_key(docker_harness.WORKER)
    offer = {"name": docker_harness.WORKER, "browsers": [], "sessions": []}
    redis_client.set(key, json.dumps(offer))
    yield docker_harness.WORKER
    redis_client.delete(key)


@pytest.fixture
def grid_config(redis_url: str, worker_heartbeat: str) -> settings.Settings:
    return settings.Settings(
        redis_url=redis_url,
        host="127.0.0.1",
        heartbeat_interval=0.5,
        heartbeat_ttl=3.0,
        startup_timeout=60.0,
        log_level="INFO",
    )


@pytest.fixture
def docker_config(
    docker_engine: docker_harness.Engine, node_image: str
) -> DockerSettings:
    return DockerSettings(
        default_image=node_image,
        docker_host=docker_engine.url,
        cpus=1.0,
        memory="1g",
        shm_size="1g",
    )


@pytest.fixture
def provisioner(
    grid_config: settings.Settings, docker_config: DockerSettings
) -> Iterator[DockerProvisioner]:
    provisioner = DockerProvisioner(grid_config, docker_config)
    yield provisioner
    provisioner.close()
