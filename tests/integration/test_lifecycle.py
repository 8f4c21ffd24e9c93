"""Session records, status, logs and Celery's own view of a live grid."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import requests
from selenium import webdriver

from tests.harness import PYTHON, Grid

RETENTION = 86400


def test_status_has_the_w3c_shape_and_the_grid_view(grid: Grid) -> None:
    grid.wait_slots_free()
    answer = requests.get(grid.url + "/status", timeout=10)
    assert answer.status_code == 200
    value = answer.json()["value"]
    assert value["ready"] is True
    assert isinstance(value["message"], str) and value["message"]
    assert value["slots"] == {"total": 2, "used": 0, "free": 2}
    (worker,) = value["workers"]
    assert worker["browsers"][0]["browserName"] == "chrome"
    assert worker["slots"] == 2


def test_status_counts_a_running_session(grid: Grid) -> None:
    driver = webdriver.Remote(grid.url, options=webdriver.ChromeOptions())
    try:
        status = grid.status()
        assert status["slots"]["used"] == 1
        assert status["sessions"] == 1
        assert status["workers"][0]["sessions"] == [driver.session_id]
    finally:
        driver.quit()


def test_record_keeps_states_times_and_reason(grid: Grid) -> None:
    driver = webdriver.Remote(grid.url, options=webdriver.ChromeOptions())
    session_id = driver.session_id or ""
    driver.quit()
    grid.wait_slots_free()

    record = grid.record(session_id)
    assert record["state"] == "terminated"
    assert record["reason"] == "deleted by the client"
    assert record["browser"] == "chrome"
    assert record["worker"].startswith("w0@")
    times = [
        float(record[f"{state}_at"])
        for state in ("queued", "provisioning", "running", "terminated")
    ]
    assert times == sorted(times)
    ttl = grid.client.ttl(f"webgrid:session:{session_id}")
    assert 0 < int(ttl) <= RETENTION  # type: ignore[arg-type]


def test_each_state_change_is_one_info_line(grid: Grid) -> None:
    driver = webdriver.Remote(grid.url, options=webdriver.ChromeOptions())
    session_id = driver.session_id or ""
    driver.quit()
    grid.wait_slots_free()

    lines = [
        line
        for name in ("manager", "worker-w0")
        for line in grid.log(name).splitlines()
        if session_id in line and " INFO " in line and "app.registry" in line
    ]
    changes = [line.split(session_id, 1)[1].strip() for line in lines]
    assert changes == [
        "queued for chrome",
        "queued -> provisioning",
        "provisioning -> running",
        "running -> terminated (deleted by the client)",
    ]


def test_celery_inspect_lists_one_task_per_live_session(grid: Grid) -> None:
    drivers = [
        webdriver.Remote(grid.url, options=webdriver.ChromeOptions()) for _ in (1, 2)
    ]
    try:
        active = _inspect_active(grid)
        tasks = [task for tasks in active.values() for task in tasks]
        assert sorted(t["args"][0] for t in tasks) == sorted(
            d.session_id or "" for d in drivers
        )
        assert {t["name"] for t in tasks} == {"provision_node"}
    finally:
        for driver in drivers:
            driver.quit()


def _inspect_active(grid: Grid) -> dict[str, list[dict[str, Any]]]:
    out = subprocess.run(
        [PYTHON, "-m", "celery", "-A", "app", "inspect", "active", "--json"],
        env=grid.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    return dict(json.loads(out.strip().splitlines()[-1]))
