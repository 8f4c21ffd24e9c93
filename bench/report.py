"""Figures from a benchmark's samples: the table, the targets, the machine.

Samples are kept per measure and end, in the unit the measure's name ends
with (ms, cmd/s, MiB). Each end's median is set against the bare
chromedriver's and Selenium Grid 4's medians; the targets of issue 4 are
checked on those ratios, and each verdict carries its margin: how far the
ratio may still move (positive) or must move (negative) to meet the target.
"""

from __future__ import annotations

import os
import platform
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psutil

Samples = dict[str, dict[str, list[float]]]
Summary = dict[str, dict[str, dict[str, float]]]

BARE = "bare"
GRID = "grid"
GRID4 = "grid4"
BASELINES = (BARE, GRID4)
# Measures whose p95 says nothing: a few rounds, or a steady quantity.
NO_TAIL = ("throughput", "RSS", "PSS")


@dataclass(frozen=True)
class Target:
    """The grid's median, divided by `baseline`'s, must stay within `limit`."""

    label: str
    measure: str
    baseline: str
    limit: float
    at_most: bool = True


TARGETS = (
    Target("command p50 <= 1.15x bare", "command ms", BARE, 1.15),
    Target("new session <= 1.0x grid4", "new session ms", GRID4, 1.0),
    Target("throughput >= 0.95x bare", "throughput cmd/s", BARE, 0.95, False),
    Target("control plane RSS <= 0.5x grid4", "RSS idle MiB", GRID4, 0.5),
    Target("control plane PSS <= 0.5x grid4", "PSS idle MiB", GRID4, 0.5),
)


# Figures


def p95(values: Sequence[float]) -> float:
    if len(values) < 2:
        return values[0]
    return statistics.quantiles(values, n=20, method="inclusive")[-1]


def summarize(samples: Samples) -> Summary:
    """Per measure and end: n, median, p95 and the ratios to the baselines."""
    return {measure: _rows(measure, by_end) for measure, by_end in samples.items()}


def _rows(measure: str, by_end: dict[str, list[float]]) -> dict[str, dict[str, float]]:
    medians = {end: statistics.median(v) for end, v in by_end.items() if v}
    rows = {}
    for end, values in by_end.items():
        if not values:
            continue
        row = {"n": len(values), "median": round(medians[end], 3)}
        if not measure.startswith(NO_TAIL):
            row["p95"] = round(p95(values), 3)
        for baseline in BASELINES:
            if medians.get(baseline):
                row[f"x_{baseline}"] = round(medians[end] / medians[baseline], 3)
        rows[end] = row
    return rows


def verdicts(summary: Summary) -> list[dict[str, Any]]:
    """Each target the run can judge, with the grid's ratio and its margin."""
    judged = []
    for target in TARGETS:
        row = summary.get(target.measure, {}).get(GRID, {})
        ratio = row.get(f"x_{target.baseline}")
        if ratio is None:
            continue
        margin = target.limit - ratio if target.at_most else ratio - target.limit
        judged.append(
            {
                "target": target.label,
                "ratio": ratio,
                "margin": round(margin, 3),
                "verdict": "PASS" if margin >= 0 else "MISS",
                "grid": row["median"],
                target.baseline: summary[target.measure][target.baseline]["median"],
            }
        )
    return judged


# Text


def render(summary: Summary) -> str:
    columns = f"{'n':>5} {'median':>9} {'p95':>9} {'x bare':>7} {'x grid4':>8}"
    lines = [f"{'measure':<17} {'end':<6} {columns}"]
    for measure, by_end in summary.items():
        for end, row in by_end.items():
            tail = f"{row['p95']:>9.2f}" if "p95" in row else f"{'-':>9}"
            lines.append(
                f"{measure:<17} {end:<6} {row['n']:>5} {row['median']:>9.2f} "
                f"{tail} {_ratio(row, BARE):>7} {_ratio(row, GRID4):>8}"
            )
    return "\n".join(lines)


def _ratio(row: dict[str, float], baseline: str) -> str:
    ratio = row.get(f"x_{baseline}")
    return "-" if ratio is None else f"{ratio:.2f}"


def render_verdicts(judged: list[dict[str, Any]]) -> str:
    lines = []
    for item in judged:
        baseline = next(key for key in item if key in BASELINES)
        lines.append(
            f"{item['verdict']}  {item['target']:<33} grid {item['ratio']:.2f}x "
            f"(margin {item['margin']:+.2f}; medians grid {item['grid']:.2f}, "
            f"{baseline} {item[baseline]:.2f})"
        )
    return "\n".join(lines)


def render_parts(parts: dict[str, dict[str, dict[str, float]]]) -> str:
    """One line per end: each part's RSS/PSS in MiB."""
    lines = []
    for end, roles in parts.items():
        shown = ", ".join(
            f"{role} {u.get('rss', 0):.0f}/{u.get('pss', 0):.0f}"
            for role, u in roles.items()
        )
        lines.append(f"  {end:<6} RSS/PSS MiB: {shown}")
    return "\n".join(lines)


# The machine


def machine() -> dict[str, Any]:
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "memory_mib": psutil.virtual_memory().total // 2**20,
        "cpu_model": cpu_model(),
        "kernel": platform.release(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def cpu_model() -> str:
    with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
        for line in cpuinfo:
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                return value.strip()
    return "unknown"
