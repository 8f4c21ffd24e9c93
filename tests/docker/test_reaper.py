"""The reaper against a real engine: it removes the containers of this grid
that nobody runs any more, keeps the others, and says why it removed each."""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import uuid

import docker
import docker.errors
import pytest

from app import registry, settings
from app.provisioners.docker import (
    GRID_LABEL,
    PROBE_MAX_AGE,
    SESSION_LABEL,
    WORKER_LABEL,
    DockerNode,
    DockerProvisioner,
    DockerSettings,
    probe_reason,
    reap,
    remove_container,
)
from tests.docker_harness import WORKER, gone, new_session


def advertise(client: registry.redis.Redis, worker: str, sessions: list[str]) -> None:
    """Publish a worker heartbeat that holds `sessions`, as a worker does."""
    offer = {"name": worker, "browsers": [], "slots": 4, "sessions": sessions}
    client.set(registry.worker_key(worker), json.dumps(offer), ex=60)


@pytest.mark.slow
def test_reaper_removes_orphans_and_keeps_live_containers(
    grid_config: settings.Settings,
    docker_config: DockerSettings,
    redis_client: registry.redis.Redis,
    engine_client: docker.DockerClient,
    node_image: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Nodes watch their worker's heartbeat too: with a long TTL, the one whose
    # worker is gone stays until the reaper comes.
    patient = DockerProvisioner(
        dataclasses.replace(grid_config, heartbeat_ttl=120.0), docker_config
    )
    live, ended, dead = (new_session(redis_client) for _ in range(3))
    advertise(redis_client, WORKER, [live, ended])
    nodes: list[DockerNode] = []
    stranger = engine_client.containers.run(
        node_image,
        entrypoint=["sleep", "infinity"],
        labels={GRID_LABEL: "redis://elsewhere:6379/0", SESSION_LABEL: "x"},
        network_mode="none",
        init=True,
        detach=True,
    )
    try:
        for session_id in (live, ended):
            nodes.append(patient.start(session_id, "chrome", {}, WORKER))
        nodes.append(patient.start(dead, "chrome", {}, "killed-worker@docker"))
        registry.terminate(redis_client, ended, "deleted by the client", retention=60)

        with caplog.at_level(logging.INFO, logger="app.provisioners.docker"):
            reaped = {r.session_id: r.reason for r in reap(grid_config, docker_config)}

        assert reaped == {
            ended: f"its session {ended} is terminated",
            dead: "its worker killed-worker@docker is gone (no heartbeat)",
        }
        assert not gone(engine_client, nodes[0].name)
        assert gone(engine_client, nodes[1].name)
        assert gone(engine_client, nodes[2].name)
        stranger.reload()
        assert stranger.status == "running"
        assert f"reaper removed container webgrid-{dead}" in caplog.text
        # A live session whose container was reaped ends with the reason.
        record = registry.session(redis_client, dead)
        assert record["state"] == registry.TERMINATED
        assert "killed-worker@docker is gone" in record["reason"]

        # The same worker name back after a restart does not own old sessions.
        advertise(redis_client, WORKER, [])
        reaped_again = reap(grid_config, docker_config)
        assert [r.reason for r in reaped_again] == [
            f"its worker {WORKER} no longer runs session {live}"
        ]
    finally:
        for node in nodes:
            node.stop()
        patient.close()
        stranger.remove(force=True)


def test_reaper_of_an_unreachable_engine_removes_nothing(
    grid_config: settings.Settings,
    docker_config: DockerSettings,
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = dataclasses.replace(docker_config, docker_host="unix:///nonexistent.sock")
    with caplog.at_level(logging.WARNING, logger="app.provisioners.docker"):
        assert reap(grid_config, config) == []
    assert "the Docker engine at unix:///nonexistent.sock does not answer" in (
        caplog.text
    )


def test_orphan_reason_of_a_session_unknown_to_redis(
    redis_client: registry.redis.Redis,
) -> None:
    from app.provisioners.docker import orphan_reason

    session_id = str(uuid.uuid4())
    labels = {SESSION_LABEL: session_id, WORKER_LABEL: WORKER}
    assert orphan_reason(redis_client, labels) == (
        f"its session {session_id} is unknown to Redis"
    )


def test_removing_a_container_already_gone_is_no_removal(
    engine_client: docker.DockerClient, node_image: str
) -> None:
    container = engine_client.containers.create(node_image, network_mode="none")
    engine_client.containers.get(container.id).remove(force=True)
    assert remove_container(container) is False


def test_a_probe_is_left_behind_only_once_no_probe_could_still_run() -> None:
    created = "2026-12-03T19:12:00.250000000Z"
    at = datetime.datetime(2026, 12, 3, 19, 12, 0, 250000, datetime.UTC).timestamp()
    assert probe_reason(created, at + 5) == ""
    assert probe_reason(created, at + PROBE_MAX_AGE + 1) == (
        f"a version probe left behind ({PROBE_MAX_AGE + 1:.0f} s old)"
    )
    assert probe_reason("", at) == "a version probe left behind (of unknown age)"
