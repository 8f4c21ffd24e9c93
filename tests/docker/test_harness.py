"""The harness's own parts that can fail: apt sources and a daemon that
cannot start."""

from __future__ import annotations

import contextlib
import os
import pathlib
import tempfile

import docker
import docker.errors
import pytest

from tests import docker_harness
from tests.docker_harness import AptSource, HarnessError, gone


def test_sources_in_both_formats(tmp_path: pathlib.Path) -> None:
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list").write_text(
        "# a comment\n"
        "deb [arch=amd64] http://mirror.example/debian bookworm main contrib\n"
        "deb-src http://mirror.example/debian bookworm main\n"
    )
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://mirror.example/debian-security\n"
        "Suites: bookworm-security\nComponents: main\n\n"
        "Types: deb\nURIs: https://other.example/apt\nSuites: nodistro\n"
        "Components: main\n"
    )
    sources = docker_harness.host_sources(tmp_path)
    assert sources == [
        AptSource("http://mirror.example/debian", ("bookworm",), ("main", "contrib")),
        AptSource(
            "http://mirror.example/debian-security", ("bookworm-security",), ("main",)
        ),
    ]
    assert docker_harness.debian_mirror(sources) == "http://mirror.example/debian"
    written = docker_harness.base_sources_file(sources)
    assert "Suites: bookworm-security\n" in written
    assert written.count("Signed-By:") == 2


def test_no_bookworm_mirror_is_an_error_that_says_where_to_add_one() -> None:
    only_security = [AptSource("http://m/debian-security", ("bookworm-security",), ())]
    with pytest.raises(HarnessError, match=r"sources\.list\.d"):
        docker_harness.debian_mirror(only_security)


def test_the_source_hash_follows_the_image_sources(tmp_path: pathlib.Path) -> None:
    for name in ("app", "node_image"):
        (tmp_path / name).mkdir()
    (tmp_path / "app" / "a.py").write_text("x = 1\n")
    (tmp_path / ".dockerignore").write_text("*\n")
    before = docker_harness.source_hash(tmp_path)
    (tmp_path / "app" / "__pycache__").mkdir()
    (tmp_path / "app" / "__pycache__" / "a.pyc").write_bytes(b"\0")
    assert docker_harness.source_hash(tmp_path) == before
    (tmp_path / "app" / "a.py").write_text("x = 2\n")
    assert docker_harness.source_hash(tmp_path) != before


@pytest.mark.skipif(os.geteuid() != 0, reason="starting dockerd needs root")
def test_a_daemon_that_cannot_start_is_reported_with_its_log(
    tmp_path: pathlib.Path,
) -> None:
    # A pid file naming a live process (this one) makes dockerd refuse to run.
    (tmp_path / "dockerd.pid").write_text(str(os.getpid()))
    exec_roots = set(pathlib.Path(tempfile.gettempdir()).glob("webgrid-dockerd-*"))
    with pytest.raises(HarnessError) as caught:
        docker_harness.start_daemon(tmp_path)
    assert "dockerd exited with code" in str(caught.value)
    assert "pid file found" in str(caught.value)
    assert docker_harness.mounts_below(tmp_path) == []
    # Its exec root is gone too.
    after = set(pathlib.Path(tempfile.gettempdir()).glob("webgrid-dockerd-*"))
    assert after == exec_roots


@pytest.mark.usefixtures("node_image")  # which makes the base image too
def test_a_container_left_behind_is_named_and_fails_the_run(
    engine_client: docker.DockerClient,
) -> None:
    before = docker_harness.container_ids(engine_client)
    left = engine_client.containers.create(
        docker_harness.BASE_IMAGE, entrypoint=["true"], network_mode="none"
    )
    try:
        # On a shared engine it is named, and kept for a person to look at ...
        with pytest.raises(HarnessError, match="docker rm -f") as caught:
            docker_harness.check_leftovers(engine_client, before, remove=False)
        assert f"1 container(s) were left on the engine: {left.name} (created, " in (
            str(caught.value)
        )
        assert "runs 'true'" in str(caught.value)
        assert not gone(engine_client, left.name)

        # ... on a daemon of our own, named and removed, so the next run is clean.
        with pytest.raises(HarnessError, match="they are removed now") as caught:
            docker_harness.check_leftovers(engine_client, before, remove=True)
        assert left.name in str(caught.value)
        assert gone(engine_client, left.name)
        docker_harness.check_leftovers(engine_client, before, remove=True)
    finally:
        with contextlib.suppress(docker.errors.NotFound):
            left.remove(force=True)
