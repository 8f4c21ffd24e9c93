"""The figures of bench.docker_start: its order of sessions and its summary."""

from __future__ import annotations

from bench import docker_start


def test_each_browser_alternates_local_and_docker() -> None:
    assert docker_start.schedule(["chrome", "firefox"]) == [
        ("chrome", "local"),
        ("chrome", "docker"),
        ("firefox", "local"),
        ("firefox", "docker"),
    ]


def test_summary_sets_docker_median_against_local() -> None:
    samples = {
        "chrome": {
            "new session ms": {
                "local": [1000.0, 1200.0, 1100.0],
                "docker": [2000.0, 2400.0, 2200.0, 9000.0],
            }
        }
    }
    rows = docker_start.summarize(samples)["chrome"]["new session ms"]
    assert rows["local"]["median"] == 1100.0
    assert rows["docker"]["median"] == 2300.0
    assert rows["docker"]["n"] == 4
    assert rows["docker"]["x_local"] == round(2300 / 1100, 3)
    assert "x_local" not in rows["local"]
    assert rows["docker"]["p95"] > rows["docker"]["median"]


def test_no_ratio_without_local_samples() -> None:
    samples = {"firefox": {"new session ms": {"local": [], "docker": [3000.0]}}}
    rows = docker_start.summarize(samples)["firefox"]["new session ms"]
    assert "local" not in rows
    assert rows["docker"] == {"n": 1, "median": 3000.0, "p95": 3000.0}


def test_table_shows_medians_p95_and_ratio() -> None:
    samples = {
        "chrome": {
            "new session ms": {"local": [1000.0, 1000.0], "docker": [1500.0, 1500.0]}
        }
    }
    lines = docker_start.render(docker_start.summarize(samples)).splitlines()
    assert lines[0].split() == [
        "browser",
        "measure",
        "local",
        "p50",
        "local",
        "p95",
        "docker",
        "p50",
        "docker",
        "p95",
        "docker/local",
    ]
    assert lines[1].split() == [
        "chrome",
        "new",
        "session",
        "ms",
        "1000",
        "1000",
        "1500",
        "1500",
        "1.50",
    ]
