"""Where a command's time goes: the grid hop by hop, in time and in CPU.

Opens one session on each end (a bare chromedriver, the grid, Selenium Grid
4) and sends `GET /session/<id>/title` over one kept-alive HTTP connection,
with no Selenium client in the way, along each path:

- bare:  chromedriver;
- node:  the grid's node agent for that session, skipping the proxy;
- proxy: the grid's public address (proxy, node agent, chromedriver);
- grid4: Grid 4 (its JVM, then its chromedriver).

Paths take turns, a block of --block commands at a time. For each path it
prints the median and p95 round trip, and the CPU time each process on the
path spent per command (the browser's processes summed), counted over
that path's blocks only. On a busy machine the CPU figures move much less
than the times do: a hop that costs CPU also waits for a core whenever the
machine has none free.

Before that, --sessions new sessions on the grid (taking turns with the
bare chromedriver's) are split into the phases the grid's session record
dates: until the record is queued (proxy, manager), until a worker claims it
(the Celery queue), until the node says it runs (node agent, driver and
browser start) and until the client has the answer (back through Redis, the
manager and the proxy).

    .venv/bin/python -m bench.hops [--commands 1000] [--block 50] [--sessions 5]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import psutil
import redis

from app import registry
from bench import compare, ends, grid4, processes, report

OUTPUT = ends.RESULTS / "hops.json"


@dataclass
class Path:
    """One way to the same kind of browser, and the processes on the way."""

    name: str
    address: str
    session_id: str
    processes: dict[str, list[psutil.Process]]
    times_ms: list[float] = field(default_factory=list)
    cpu_s: dict[str, float] = field(default_factory=dict)

    def send(self, connection: http.client.HTTPConnection, count: int) -> None:
        """`count` title commands, timed; the CPU they cost each process."""
        before = cpu_seconds(self.processes)
        for _ in range(count):
            begin = time.perf_counter()
            connection.request("GET", f"/session/{self.session_id}/title")
            answer = connection.getresponse()
            body = answer.read()
            self.times_ms.append((time.perf_counter() - begin) * 1000)
            if answer.status != 200:
                raise ends.EndError(f"{self.name} answered {answer.status}: {body!r}")
        for role, spent in cpu_seconds(self.processes).items():
            self.cpu_s[role] = self.cpu_s.get(role, 0.0) + spent - before[role]


def cpu_seconds(found: dict[str, list[psutil.Process]]) -> dict[str, float]:
    """CPU seconds (user and system) each role's processes have used."""
    seconds = dict.fromkeys(found, 0.0)
    for role, members in found.items():
        for process in members:
            try:
                times = process.cpu_times()
            except psutil.Error:
                continue
            seconds[role] += times.user + times.system
    return seconds


# Finding the hops


def paths(
    drivers: compare.Drivers, by_name: dict[str, ends.End], tracker: processes.Tracker
) -> list[Path]:
    """The paths to each end's first session, with the processes on them."""
    found = []
    for name, started in drivers.items():
        session_id = str(started[0].session_id)
        end = by_name[name]
        address = end.url.removeprefix("http://")
        if name == report.GRID:
            node = node_agent(tracker)
            on_node = {"node": [node], **driver_of(node)}
            hops = {"proxy": [end.parts()[ends.GRID_PROCESS]], **on_node}
            found.append(Path("node", listening(node), session_id, on_node))
            found.append(Path("proxy", address, session_id, hops))
        elif name == report.GRID4:
            jvm = end.parts()["jvm"]
            hops = {"jvm": [jvm], **driver_of(jvm)}
            found.append(Path(name, address, session_id, hops))
        else:
            root = end.parts()["chromedriver"]
            hops = {"chromedriver": [root], "browser": browsers(root)}
            found.append(Path(name, address, session_id, hops))
    return found


def node_agent(tracker: processes.Tracker) -> psutil.Process:
    """The node agent serving the open session (a spare node runs no driver)."""
    for process in tracker.scan(report.GRID):
        try:
            if "app.node" in process.cmdline() and any(
                child.name() == "chromedriver" for child in process.children()
            ):
                return process
        except psutil.Error:
            continue
    raise ends.EndError("the grid runs no node agent; is its session open?")


def driver_of(parent: psutil.Process) -> dict[str, list[psutil.Process]]:
    """The chromedriver `parent` started, and its browser's processes."""
    for child in parent.children(recursive=True):
        if child.name() == "chromedriver":
            return {"chromedriver": [child], "browser": browsers(child)}
    raise ends.EndError(f"{parent.name()} ({parent.pid}) runs no chromedriver")


def browsers(driver: psutil.Process) -> list[psutil.Process]:
    names = processes.BROWSER_NAMES
    return [p for p in driver.children(recursive=True) if p.name() in names]


def listening(process: psutil.Process) -> str:
    """host:port of the one TCP port `process` listens on."""
    for connection in process.net_connections(kind="tcp"):
        if connection.status == psutil.CONN_LISTEN:
            return f"{connection.laddr.ip}:{connection.laddr.port}"
    raise ends.EndError(f"process {process.pid} listens on no TCP port")


# New sessions, phase by phase

PHASES = (
    ("to queued", "sent", "queued_at"),
    ("to claimed", "queued_at", "provisioning_at"),
    ("to running", "provisioning_at", "running_at"),
    ("to answered", "running_at", "answered"),
)


def session_phases(remote_ends: Sequence[ends.End], rounds: int) -> dict[str, float]:
    """Median milliseconds of each phase of the grid's new sessions, and the
    median whole new session of each end, taking turns."""
    grid = next(end for end in remote_ends if end.name == report.GRID)
    client = grid_redis(grid)
    phases: dict[str, list[float]] = {name: [] for name, _, _ in PHASES}
    totals: dict[str, list[float]] = {end.name: [] for end in remote_ends}
    for turn in range(rounds):
        for end in compare.rotation(remote_ends, turn):
            sent = time.time()
            driver = compare.open_session(end)
            answered = time.time()
            try:
                totals[end.name].append((answered - sent) * 1000)
                if end is grid:
                    dates = record_dates(client, str(driver.session_id))
                    dates.update(sent=sent, answered=answered)
                    for name, since, until in PHASES:
                        phases[name].append((dates[until] - dates[since]) * 1000)
            finally:
                driver.quit()
    both = {**phases, **{f"whole, {name}": ms for name, ms in totals.items()}}
    return {name: round(statistics.median(ms), 1) for name, ms in both.items()}


def record_dates(client: redis.Redis, session_id: str) -> dict[str, float]:
    """The times (Unix seconds) the session's record states, by field."""
    record = registry.session(client, session_id)
    return {k: float(v) for k, v in record.items() if k.endswith("_at")}


def grid_redis(grid: ends.End) -> redis.Redis:
    """A client of the grid's embedded Redis, at the port it listens on."""
    host, _, port = listening(grid.parts()["redis"]).rpartition(":")
    return redis.Redis(host=host, port=int(port), decode_responses=True)


# The run


def measure(found: list[Path], count: int, block: int) -> None:
    connections = {p.name: http.client.HTTPConnection(p.address) for p in found}
    try:
        for path in found:
            path.send(connections[path.name], block)
        forget_warmup(found)
        for turn in range(-(-count // block)):
            size = min(block, count - turn * block)
            for path in compare.rotation(found, turn):
                path.send(connections[path.name], size)
    finally:
        for connection in connections.values():
            connection.close()


def forget_warmup(found: list[Path]) -> None:
    """Drop what the warm-up block measured."""
    for path in found:
        path.times_ms.clear()
        path.cpu_s.clear()


def summary(found: list[Path]) -> dict[str, dict[str, Any]]:
    return {
        path.name: {
            "n": len(path.times_ms),
            "median_ms": round(statistics.median(path.times_ms), 3),
            "p95_ms": round(report.p95(path.times_ms), 3),
            "cpu_ms_per_command": {
                role: round(seconds * 1000 / len(path.times_ms), 3)
                for role, seconds in path.cpu_s.items()
            },
        }
        for path in found
    }


def render(figures: dict[str, dict[str, Any]]) -> str:
    lines = [f"{'path':<6} {'n':>5} {'median ms':>10} {'p95 ms':>9}  CPU ms/command"]
    for name, row in figures.items():
        cpu = row["cpu_ms_per_command"]
        shown = ", ".join(f"{role} {ms:.2f}" for role, ms in cpu.items())
        lines.append(
            f"{name:<6} {row['n']:>5} {row['median_ms']:>10.2f} "
            f"{row['p95_ms']:>9.2f}  {shown} (sum {sum(cpu.values()):.2f})"
        )
    return "\n".join(lines)


def run(args: argparse.Namespace, remote_ends: Sequence[ends.End]) -> dict[str, Any]:
    tracker = processes.Tracker()
    try:
        for end in remote_ends:
            compare.progress(f"starting {end.name}")
            end.start()
        tracker.scan()
        by_name = {end.name: end for end in remote_ends}
        phases = session_phases(remote_ends, args.sessions) if args.sessions else {}
        with (
            compare.serve_page() as page,
            compare.sessions_on(remote_ends, page, 1, 0) as drivers,
        ):
            found = paths(drivers, by_name, tracker)
            compare.progress(f"{args.commands} commands per path")
            measure(found, args.commands, args.block)
        return {
            "machine": report.machine(),
            "new_session_ms": phases,
            "paths": summary(found),
        }
    finally:
        compare.stop_all(remote_ends, tracker)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.hops")
    parser.add_argument("--commands", type=int, default=1000, help="per path")
    parser.add_argument("--block", type=int, default=50, help="in a row (50)")
    parser.add_argument("--sessions", type=int, default=5, help="per end (5)")
    parser.add_argument("--no-grid4", action="store_true", help="leave Grid 4 out")
    args = parser.parse_args(argv)
    os.environ["SE_OFFLINE"] = "true"
    remote_ends: list[ends.End] = [ends.bare(), ends.grid(1, 300)]
    if not args.no_grid4:
        remote_ends.append(grid4.end(1, 300))
    try:
        figures = run(args, remote_ends)
    except ends.EndError as exc:
        ends.warn(str(exc))
        return 1
    except KeyboardInterrupt:
        return 130
    OUTPUT.write_text(json.dumps(figures, indent=2) + "\n")
    for phase, ms in figures["new_session_ms"].items():
        print(f"new session, {phase}: {ms:.1f} ms (median)")
    print(render(figures["paths"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
