"""Every component refuses a bad setting at start, naming the variable."""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.harness import ALL_IN_ONE, COMMANDS, ONE_PROCESS, PYTHON

STARTS = {
    **COMMANDS,
    "proxy, manager and worker": ONE_PROCESS,
    "worker in app.web": [PYTHON, "-m", "app.web", "worker"],
    "all-in-one": ALL_IN_ONE,
}


@pytest.mark.parametrize("component", sorted(STARTS))
@pytest.mark.parametrize(
    ("name", "value"),
    [("WEBGRID_SLOTS", "many"), ("WEBGRID_IDLE_TIMEOUT", "-5")],
)
def test_bad_setting_stops_the_start(component: str, name: str, value: str) -> None:
    env = {**os.environ, name: value, "REDIS_URL": "redis://127.0.0.1:1/0"}
    done = subprocess.run(
        STARTS[component], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode != 0
    assert f"{name}={value!r} is not valid" in done.stderr


@pytest.mark.parametrize(
    "roles", [[], ["router"], ["proxy", "proxy"], ["manager", "celery"]]
)
def test_web_refuses_roles_it_does_not_serve(roles: list[str]) -> None:
    done = subprocess.run(
        [PYTHON, "-m", "app.web", *roles], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert done.stderr == (
        "usage: python -m app.web proxy|manager|worker [proxy|manager|worker ...]\n"
    )


def test_unpatched_server_refuses_to_start() -> None:
    code = "from app.patching import require_patched; require_patched('proxy')"
    done = subprocess.run(
        [PYTHON, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1
    assert "proxy: gevent did not patch socket" in done.stderr
    assert "patch_all()" in done.stderr


def test_patched_server_starts() -> None:
    code = (
        "from gevent import monkey; monkey.patch_all(); "
        "from app.patching import require_patched; require_patched('proxy')"
    )
    done = subprocess.run([PYTHON, "-c", code], capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr
