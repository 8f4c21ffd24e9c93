"""Figures over several runs of `bench.compare`: the median of each.

One run on a shared, noisy machine says little; this reads the JSON files
that several runs wrote and prints, for each target of issue 4, the ratio
each run found and their median, then each end's median figures, as the
median over the runs:

    for i in 1 2 3 4 5; do
        .venv/bin/python -m bench.compare --output bench/results/run-$i.json
    done
    .venv/bin/python -m bench.runs bench/results/run-*.json
"""

from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import sys
from collections.abc import Sequence
from typing import Any

from bench import report

Run = dict[str, Any]
# The figures shown per end, with the statistic of each run they take.
FIGURES = (
    ("new session ms", "median"),
    ("new session ms", "p95"),
    ("command ms", "median"),
    ("command ms", "p95"),
    ("throughput cmd/s", "median"),
    ("RSS idle MiB", "median"),
    ("PSS idle MiB", "median"),
)


def target_rows(runs: Sequence[Run]) -> list[tuple[str, list[float], float, str]]:
    """Per target: each run's ratio, their median, and the verdict on it."""
    rows = []
    for target in report.TARGETS:
        ratios = [found["ratio"] for found in _verdicts(runs, target.label)]
        if not ratios:
            continue
        middle = statistics.median(ratios)
        met = middle <= target.limit if target.at_most else middle >= target.limit
        rows.append((target.label, ratios, middle, "PASS" if met else "MISS"))
    return rows


def figure_rows(runs: Sequence[Run]) -> list[tuple[str, dict[str, float]]]:
    """Per figure: each end's median over the runs of that statistic."""
    rows = []
    for measure, statistic in FIGURES:
        by_end: dict[str, list[float]] = {}
        for run in runs:
            for end, figures in run["results"].get(measure, {}).items():
                by_end.setdefault(end, []).append(figures[statistic])
        if by_end:
            medians = {end: statistics.median(v) for end, v in by_end.items()}
            rows.append((f"{measure} {statistic}", medians))
    return rows


def _verdicts(runs: Sequence[Run], label: str) -> list[dict[str, Any]]:
    return [t for run in runs for t in run["targets"] if t["target"] == label]


def render(runs: Sequence[Run]) -> str:
    dates = sorted(run["date"] for run in runs)
    commits = sorted({run["versions"]["grid_commit"] for run in runs})
    loads = [run["machine"]["load_average"][0] for run in runs]
    lines = [
        f"{len(runs)} runs, {dates[0]} to {dates[-1]}, grid at "
        f"{', '.join(commits)}; load average (1 min) at the end of each: "
        + ", ".join(f"{load:.1f}" for load in loads),
        "",
    ]
    for label, ratios, middle, verdict in target_rows(runs):
        each = " ".join(f"{ratio:.2f}" for ratio in ratios)
        lines.append(f"{verdict}  {label:<34} median {middle:.2f}  (runs: {each})")
    lines.append("")
    for name, medians in figure_rows(runs):
        shown = "  ".join(f"{end} {value:.2f}" for end, value in medians.items())
        lines.append(f"{name:<26} {shown}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.runs",
        description="Medians over several runs of bench.compare.",
    )
    parser.add_argument("files", nargs="+", type=pathlib.Path, help="JSON results")
    args = parser.parse_args(argv)
    try:
        runs = [json.loads(path.read_text()) for path in args.files]
    except (OSError, ValueError) as exc:
        print(f"bench.runs: cannot read a result: {exc}", file=sys.stderr)
        return 2
    print(render(runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
