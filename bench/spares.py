"""Benchmark: new sessions with a spare node against without one.

Two all-in-one grids run side by side, alike but for WEBGRID_SPARE_NODES:
"spare" keeps one node process started ahead of its session (the
default), "cold" keeps none, so that each session's node starts Python
first. The Selenium client opens a session on each in turn, a different
one first each round, quits it and waits for its browser to go, as
`bench.compare` does. It prints the median and p95 time to a new session
of each, and the resident memory of the spare node, and writes them with
the raw samples to bench/results/spares.json:

    .venv/bin/python -m bench.spares [--sessions 10]

It stops both grids, and anything they left, also on Ctrl-C or an error.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
from collections.abc import Sequence
from typing import Any

from bench import compare, ends, processes, report

OUTPUT = ends.RESULTS / "spares.json"
MEASURE = "new session ms"


def make_ends(slots: int) -> list[ends.ProcessEnd]:
    return [
        ends.grid(slots, 300, name="spare", WEBGRID_SPARE_NODES="1"),
        ends.grid(slots, 300, name="cold", WEBGRID_SPARE_NODES="0"),
    ]


def spare_mib(end: ends.End) -> float | None:
    """The resident memory of `end`'s idle spare node, if it has one."""
    spare = end.parts().get("spare node")
    return spare.memory_info().rss / 2**20 if spare else None


def run(remote_ends: Sequence[ends.End], sessions: int) -> dict[str, Any]:
    tracker = processes.Tracker()
    try:
        for end in remote_ends:
            compare.progress(f"starting {end.name}")
            end.start()
        samples = compare.measure_sessions(remote_ends, sessions, tracker)
        memory = {end.name: spare_mib(end) for end in remote_ends}
    finally:
        compare.stop_all(remote_ends, tracker)
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": report.machine(),
        "grid_commit": compare.grid_commit(),
        "sessions": sessions,
        "results": {
            name: {"median": statistics.median(v), "p95": report.p95(v)}
            for name, v in samples[MEASURE].items()
        },
        "spare node rss MiB": memory,
        "samples": samples[MEASURE],
    }


def render(results: dict[str, Any]) -> str:
    lines = ["grid    new session p50    p95   spare node RSS"]
    for name, figures in results["results"].items():
        rss = results["spare node rss MiB"][name]
        shown = f"{rss:.0f} MiB" if rss is not None else "none"
        lines.append(
            f"{name:<7} {figures['median']:11.0f} ms {figures['p95']:6.0f} ms   {shown}"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.spares",
        description="New sessions with a spare node against without one.",
    )
    parser.add_argument("--sessions", type=int, default=10, help="per grid (10)")
    parser.add_argument("--slots", type=int, default=4, help="of each grid (4)")
    args = parser.parse_args(argv)
    if args.sessions < 1 or args.slots < 1:
        parser.error("--sessions and --slots must be at least 1")
    os.environ["SE_OFFLINE"] = "true"
    try:
        results = run(make_ends(args.slots), args.sessions)
    except ends.EndError as exc:
        compare.warn(str(exc))
        return 1
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text(json.dumps(results, indent=2) + "\n")
    print(render(results))
    print(f"written to {OUTPUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
