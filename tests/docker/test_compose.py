"""docker-compose.yml is a valid one-host deployment."""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess

import pytest

from tests import docker_harness


def compose_command() -> list[str]:
    """`docker compose` where the plugin exists, else `docker-compose`."""
    docker_cli = shutil.which("docker")
    if docker_cli:
        probe = subprocess.run(
            [docker_cli, "compose", "version"], capture_output=True, text=True
        )
        if probe.returncode == 0:
            return [docker_cli, "compose"]
    if not shutil.which("docker-compose") and os.geteuid() == 0:
        docker_harness.ensure_commands({"docker-compose": "docker-compose"})
    if not shutil.which("docker-compose"):
        pytest.fail(
            "neither `docker compose` nor `docker-compose` is installed; "
            "apt-get install docker-compose"
        )
    return ["docker-compose"]


def compose(*args: str, file: str = "docker-compose.yml") -> str:
    """Run `config` on `file`; its output, or fail with what it said."""
    done = subprocess.run(
        [*compose_command(), "-f", file, "config", *args],
        cwd=docker_harness.ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "WEBGRID_HOST": "10.0.0.7"},
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_compose_file_is_a_one_host_grid() -> None:
    services = compose("--services").split()
    assert sorted(services) == ["manager", "proxy", "redis", "worker"]
    resolved = compose()
    assert "/var/run/docker.sock:/var/run/docker.sock" in resolved
    assert "WEBGRID_PROVISIONER: docker" in resolved
    assert "WEBGRID_HOST: 10.0.0.7" in resolved
    assert resolved.count("network_mode: host") == 4


def test_compose_validation_catches_a_broken_file(tmp_path: pathlib.Path) -> None:
    broken = tmp_path / "compose.yml"
    broken.write_text("services:\n  worker:\n    network_mode: [host]\n")
    with pytest.raises(AssertionError):
        compose(file=str(broken))
