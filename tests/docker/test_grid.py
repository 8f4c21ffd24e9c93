"""The whole grid with the Docker provisioner: Selenium clients get
browsers in containers through the proxy, and nothing outlives a session."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable

import docker
import pytest
from selenium import webdriver
from selenium.common.exceptions import SessionNotCreatedException

from app.provisioners.docker import SESSION_LABEL
from tests import docker_harness
from tests.harness import Grid, wait_for


def docker_grid(
    make_grid: Callable[..., Grid],
    engine: docker_harness.Engine,
    image: str,
    workers: int = 1,
    one_process: bool = False,
) -> Grid:
    return make_grid(
        workers=workers,
        one_process=one_process,
        WEBGRID_PROVISIONER="docker",
        WEBGRID_DOCKER_IMAGE=image,
        DOCKER_HOST=engine.url,
        WEBGRID_BROWSERS="chrome,firefox",
        WEBGRID_SLOTS="2",
    )


def containers_of(engine_client: docker.DockerClient, session_id: str) -> list[str]:
    found = engine_client.containers.list(
        all=True, filters={"label": f"{SESSION_LABEL}={session_id}"}
    )
    return [c.name for c in found]


@pytest.mark.slow
@pytest.mark.parametrize(
    "options",
    [webdriver.ChromeOptions, webdriver.FirefoxOptions],
    ids=["chrome", "firefox"],
)
def test_selenium_gets_a_browser_in_a_container(
    make_grid: Callable[..., Grid],
    docker_engine: docker_harness.Engine,
    engine_client: docker.DockerClient,
    node_image: str,
    pages: str,
    options: Callable[[], webdriver.ChromeOptions],
) -> None:
    grid = docker_grid(make_grid, docker_engine, node_image)
    driver = webdriver.Remote(grid.url, options=options())
    session_id = driver.session_id
    assert session_id
    try:
        assert containers_of(engine_client, session_id)
        driver.get(f"{pages}/form.html")
        assert driver.title
    finally:
        driver.quit()
    wait_for(lambda: not containers_of(engine_client, session_id), 30, "container gone")


@pytest.mark.slow
def test_one_process_grid_starts_and_stops_containers(
    make_grid: Callable[..., Grid],
    docker_engine: docker_harness.Engine,
    engine_client: docker.DockerClient,
    node_image: str,
) -> None:
    """The Docker provisioner inside the all-in-one grid's one process, where
    the worker is on gevent's pool."""
    grid = docker_grid(make_grid, docker_engine, node_image, one_process=True)
    process = grid.supervisor.children["grid"]
    driver = webdriver.Remote(grid.url, options=webdriver.ChromeOptions())
    first = driver.session_id or ""
    assert containers_of(engine_client, first)
    assert driver.execute_script("return 6 * 7") == 42
    driver.quit()
    wait_for(lambda: not containers_of(engine_client, first), 30, "container gone")

    running = webdriver.Remote(grid.url, options=webdriver.FirefoxOptions())
    session_id = running.session_id or ""
    assert containers_of(engine_client, session_id)
    process.send_signal(signal.SIGTERM)
    assert process.wait(60) == 0
    assert not containers_of(engine_client, session_id)
    assert grid.record(session_id)["state"] == "terminated"


@pytest.mark.slow
def test_containers_of_a_killed_worker_are_reaped(
    make_grid: Callable[..., Grid],
    docker_engine: docker_harness.Engine,
    engine_client: docker.DockerClient,
    node_image: str,
) -> None:
    grid = docker_grid(make_grid, docker_engine, node_image, workers=0)
    doomed = grid.start_worker("doomed")
    grid.wait_ready()
    driver = webdriver.Remote(grid.url, options=webdriver.ChromeOptions())
    session_id = driver.session_id
    assert session_id and containers_of(engine_client, session_id)

    # The worker dies; a second one's reaper removes what it left.
    os.kill(doomed.pid, signal.SIGKILL)
    grid.start_worker("survivor")
    wait_for(
        lambda: not containers_of(engine_client, session_id), 60, "container reaped"
    )
    assert grid.record(session_id)["state"] == "terminated"


@pytest.mark.slow
def test_an_image_gone_after_start_is_named_to_the_client(
    make_grid: Callable[..., Grid],
    docker_engine: docker_harness.Engine,
    engine_client: docker.DockerClient,
    node_image: str,
) -> None:
    doomed_tag = "webgrid-node:e2e-doomed"
    engine_client.images.get(node_image).tag(doomed_tag)
    grid = docker_grid(make_grid, docker_engine, doomed_tag)
    engine_client.images.remove(doomed_tag)
    with pytest.raises(SessionNotCreatedException) as caught:
        webdriver.Remote(grid.url, options=webdriver.ChromeOptions())
    message = caught.value.msg or ""
    assert "webgrid-node:e2e-doomed" in message
    assert "docker build" in message
