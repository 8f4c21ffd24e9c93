"""The resident memory of an end's own processes, taken while it is idle.

Each part of an end (see `ends.End.parts`) is measured twice: RSS, and PSS
(each shared page divided among the processes that share it, from
/proc/<pid>/smaps_rollup through psutil) where the kernel offers it. An end's
control plane is the sum over its `counted` parts. Idle means the end runs
nothing but its parts: no session, so no node, driver or browser.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import psutil

from bench import ends, processes

MIB = 2**20
KINDS = ("rss", "pss")
IDLE_TIMEOUT = 30.0

Usage = dict[str, float]


def measure(
    end: ends.End, tracker: processes.Tracker, samples: int, pause: float
) -> dict[str, Any]:
    """`samples` snapshots of `end`'s parts, `pause` seconds apart, once idle.

    Returns the control plane's total per snapshot ({kind: [MiB, ...]}) and
    the median of each part ({role: {kind: MiB}}).
    """
    wait_idle(end, tracker)
    snapshots = []
    for index in range(samples):
        if index:
            time.sleep(pause)
        snapshots.append(snapshot(end))
    totals = [control_plane(end, shot) for shot in snapshots]
    return {
        "control_plane": {
            kind: [t[kind] for t in totals if kind in t] for kind in KINDS
        },
        "parts": median_parts(snapshots),
    }


def wait_idle(end: ends.End, tracker: processes.Tracker) -> None:
    """Wait until `end` runs only its parts; warn about what else stays."""
    deadline = time.monotonic() + IDLE_TIMEOUT
    extra = extras(end, tracker)
    while extra and time.monotonic() < deadline:
        time.sleep(0.2)
        extra = extras(end, tracker)
    if extra:
        ends.warn(
            f"{end.name} is not idle after {IDLE_TIMEOUT:g} s "
            f"({processes.describe(extra)} still run); measuring anyway"
        )


def extras(end: ends.End, tracker: processes.Tracker) -> list[psutil.Process]:
    own = set(end.parts().values())
    return [p for p in tracker.scan(end.name) if p not in own and processes.is_alive(p)]


def snapshot(end: ends.End) -> dict[str, Usage]:
    """RSS and PSS in MiB of each of `end`'s parts, now."""
    parts = end.parts()
    missing = [role for role in end.counted if role not in parts]
    if missing:
        raise ends.EndError(
            f"{end.name} runs no {', '.join(missing)} process (found: "
            f"{', '.join(parts) or 'none'}); see {ends.log_path(end.name)}"
        )
    return {role: usage(process) for role, process in parts.items()}


def usage(process: psutil.Process) -> Usage:
    try:
        info = process.memory_full_info()
    except psutil.AccessDenied:
        info = process.memory_info()
    figures = {"rss": info.rss / MIB}
    pss = getattr(info, "pss", None)
    if pss is not None:
        figures["pss"] = pss / MIB
    return figures


def control_plane(end: ends.End, shot: dict[str, Usage]) -> Usage:
    """The sum over `end`'s counted parts, for each kind all of them have."""
    counted = [shot[role] for role in end.counted]
    kinds = [kind for kind in KINDS if all(kind in part for part in counted)]
    return {kind: sum(part[kind] for part in counted) for kind in kinds}


def median_parts(snapshots: list[dict[str, Usage]]) -> dict[str, Usage]:
    roles = {role for shot in snapshots for role in shot}
    return {
        role: {
            kind: round(statistics.median(values), 1)
            for kind in KINDS
            if (values := [s[role][kind] for s in snapshots if kind in s.get(role, {})])
        }
        for role in sorted(roles)
    }
