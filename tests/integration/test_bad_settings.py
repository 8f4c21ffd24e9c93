"""Every component refuses a bad setting at start, naming the variable."""

from __future__ import annotations

import os
import subprocess

import pytest

from app.run import COMMANDS, PYTHON

STARTS = {
    **COMMANDS,
    "all-in-one": [PYTHON, "-m", "app.run"],
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
