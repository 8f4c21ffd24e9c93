"""bench.runs: the median over several benchmark runs, and its verdicts."""

from __future__ import annotations

import json
import pathlib
from typing import Any

import pytest

from bench import runs


def run(throughput: float, rss: float, grid_ms: float) -> dict[str, Any]:
    """A result file's shape, as bench.compare writes it."""
    return {
        "date": f"2026-12-04T07:{int(grid_ms) % 60:02d}:00+00:00",
        "versions": {"grid_commit": "abc1234"},
        "machine": {"load_average": [1.5, 1.0, 0.5]},
        "targets": [
            {"target": "throughput >= 0.95x bare", "ratio": throughput},
            {"target": "control plane RSS <= 0.5x grid4", "ratio": rss},
        ],
        "results": {
            "command ms": {
                "bare": {"median": 3.0, "p95": 4.0},
                "grid": {"median": grid_ms, "p95": grid_ms + 1},
            }
        },
    }


def test_the_verdict_is_on_the_median_of_the_runs() -> None:
    rows = runs.target_rows(
        [run(0.83, 0.55, 3.3), run(0.97, 0.44, 3.4), run(1.01, 0.45, 3.9)]
    )
    assert rows == [
        ("throughput >= 0.95x bare", [0.83, 0.97, 1.01], 0.97, "PASS"),
        ("control plane RSS <= 0.5x grid4", [0.55, 0.44, 0.45], 0.45, "PASS"),
    ]


def test_a_median_past_the_limit_misses() -> None:
    rows = runs.target_rows([run(0.90, 0.56, 3.3), run(0.96, 0.60, 3.4)])
    assert [(label, verdict) for label, _, _, verdict in rows] == [
        ("throughput >= 0.95x bare", "MISS"),
        ("control plane RSS <= 0.5x grid4", "MISS"),
    ]


def test_figures_are_medians_per_end() -> None:
    rows = dict(runs.figure_rows([run(1, 0.4, 3.2), run(1, 0.4, 3.6), run(1, 0.4, 5)]))
    assert rows["command ms median"] == {"bare": 3.0, "grid": 3.6}
    assert rows["command ms p95"] == {"bare": 4.0, "grid": 4.6}
    assert "new session ms median" not in rows


def test_a_file_that_is_not_json_is_refused(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good, bad = tmp_path / "good.json", tmp_path / "bad.json"
    good.write_text(json.dumps(run(1, 0.4, 3)))
    bad.write_text("{not json")
    assert runs.main([str(good), str(bad)]) == 2
    assert "bench.runs: cannot read a result" in capsys.readouterr().err


def test_the_report_names_runs_commit_and_verdicts(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    paths = []
    for index, ratio in enumerate((0.9, 1.0, 1.1)):
        path = tmp_path / f"run-{index}.json"
        path.write_text(json.dumps(run(ratio, 0.4, 3 + index)))
        paths.append(str(path))
    assert runs.main(paths) == 0
    out = capsys.readouterr().out
    assert out.startswith("3 runs, ")
    assert "grid at abc1234" in out
    assert "PASS  throughput >= 0.95x bare" in out
    assert "median 1.00  (runs: 0.90 1.00 1.10)" in out
