"""The Docker provisioner's settings, read from the environment."""

from __future__ import annotations

import pytest

from app.errors import SettingsError
from app.provisioners.docker import DEFAULT_IMAGE, docker_settings


def test_defaults() -> None:
    config = docker_settings({})
    assert config.image_for("chrome") == DEFAULT_IMAGE
    assert config.network == "host"
    assert (config.cpus, config.memory, config.shm_size) == (1.0, "2g", "1g")
    assert config.docker_host == "unix:///var/run/docker.sock"


def test_one_image_for_every_browser() -> None:
    config = docker_settings({"WEBGRID_DOCKER_IMAGE": "registry.local/node:7"})
    assert config.image_for("chrome") == "registry.local/node:7"
    assert config.image_for("firefox") == "registry.local/node:7"


def test_an_image_per_browser() -> None:
    config = docker_settings(
        {"WEBGRID_DOCKER_IMAGE": "chrome=node-chrome:1, firefox=node-firefox:1"}
    )
    assert config.image_for("chrome") == "node-chrome:1"
    assert config.image_for("firefox") == "node-firefox:1"


def test_every_setting_is_read() -> None:
    config = docker_settings(
        {
            "WEBGRID_DOCKER_NETWORK": "webgrid",
            "WEBGRID_DOCKER_CPUS": "1.5",
            "WEBGRID_DOCKER_MEMORY": "512M",
            "WEBGRID_DOCKER_SHM_SIZE": "2g",
            "DOCKER_HOST": "tcp://127.0.0.1:2375",
        }
    )
    assert config.network == "webgrid"
    assert config.cpus == 1.5
    assert (config.memory, config.shm_size) == ("512m", "2g")
    assert config.docker_host == "tcp://127.0.0.1:2375"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("WEBGRID_DOCKER_IMAGE", "safari=node:1"),
        ("WEBGRID_DOCKER_IMAGE", "chrome="),
        ("WEBGRID_DOCKER_CPUS", "lots"),
        ("WEBGRID_DOCKER_CPUS", "-1"),
        ("WEBGRID_DOCKER_MEMORY", "2 GB"),
        ("WEBGRID_DOCKER_SHM_SIZE", "big"),
    ],
)
def test_a_bad_value_names_its_variable(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=f"^{name}="):
        docker_settings({name: value})
