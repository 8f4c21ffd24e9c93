"""Benchmark: a burst of new-session requests against few slots.

Starts a grid of its own (embedded Redis, a manager, --workers workers of
--slots slots each, the proxy; the same processes the integration tests
start, with the grid's default heartbeats), waits until every worker has
joined, then sends --requests `POST /session` at once, one thread each.
Every client that gets a session asks for the page title once and deletes
the session; the others keep the error they were answered.

From the session records in Redis it reports, per session:

- queue wait: `provisioning_at - queued_at` (until a worker took it);
- start: `running_at - provisioning_at` (node, driver and browser up);
- handoff: from the end of a session (`terminated_at`) to the claim of a
  request that was waiting for it, on the same worker: how soon a freed
  slot is used;
- to session: the client's time from sending the request to its answer;

as p50, p90, p95 and max (nearest rank), prints them as a table, and writes
them with the raw samples to bench/results/burst.json. The grid's logs go
to bench/results/burst-logs/. Run it from the repository's root:

    .venv/bin/python -m bench.burst [--requests 40] [--workers 2] [--slots 2]

It stops every process it started, also on Ctrl-C or an error. All traffic
stays on loopback.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import json
import math
import os
import pathlib
import platform
import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Generic, TypeVar

import psutil
import redis
import requests

from app import registry, settings
from tests.harness import Grid, wait_for

T = TypeVar("T")

RESULTS = pathlib.Path(__file__).parent / "results"
OUTPUT = RESULTS / "burst.json"
LOGS = RESULTS / "burst-logs"
ANY_CHROME = {"capabilities": {"alwaysMatch": {"browserName": "chrome"}}}
PERCENTILES = (50, 90, 95, 100)
DEFAULTS = settings.Settings()
# Longer than a grid with default settings may take to answer: a request
# may wait the whole queue timeout, then take a whole start.
CLIENT_TIMEOUT = DEFAULTS.queue_timeout + DEFAULTS.startup_timeout + 30
COMMAND_TIMEOUT = 60.0
SAMPLE_EVERY = 0.25
# Chromium's helpers may outlive their browser by a second or two.
LEFTOVER_GRACE = 5.0


@dataclasses.dataclass
class Answer:
    """What one client of the burst saw."""

    index: int
    status: int | None = None
    value: Any = None
    seconds: float = math.nan
    title_status: int | None = None
    delete_status: int | None = None
    failure: str = ""
    # What a command on the session answered when it was not 200.
    command_errors: list[str] = dataclasses.field(default_factory=list)

    @property
    def session_id(self) -> str | None:
        if self.status == 200 and isinstance(self.value, dict):
            found = self.value.get("sessionId")
            return str(found) if found else None
        return None

    @property
    def error(self) -> str:
        """`code: message` of a W3C error answer, else ''."""
        if self.status == 200 or not isinstance(self.value, dict):
            return ""
        return f"{self.value.get('error')}: {self.value.get('message')}"


# The burst


def fire(url: str, count: int, timeout: float = CLIENT_TIMEOUT) -> list[Answer]:
    """Send `count` new-session requests to `url` at once; wait for all."""
    answers = [Answer(index) for index in range(count)]
    start_line = threading.Barrier(count)
    threads = [
        threading.Thread(
            target=_client,
            args=(url, answer, start_line, timeout),
            name=f"burst client {answer.index}",
            daemon=True,
        )
        for answer in answers
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return answers


def _client(
    url: str, answer: Answer, start_line: threading.Barrier, timeout: float
) -> None:
    """One client: ask for a session, use it once, delete it."""
    start_line.wait()
    begin = time.monotonic()
    try:
        reply = requests.post(url + "/session", json=ANY_CHROME, timeout=timeout)
        answer.seconds = time.monotonic() - begin
        answer.status = reply.status_code
        answer.value = reply.json().get("value")
        session_id = answer.session_id
        if session_id:
            _use_and_delete(url + "/session/" + session_id, answer)
    except (requests.RequestException, ValueError, AttributeError) as exc:
        answer.failure = f"{type(exc).__name__}: {exc}"


def _use_and_delete(session_url: str, answer: Answer) -> None:
    title = requests.get(session_url + "/title", timeout=COMMAND_TIMEOUT)
    answer.title_status = title.status_code
    deleted = requests.delete(session_url, timeout=COMMAND_TIMEOUT)
    answer.delete_status = deleted.status_code
    for name, reply in (("title", title), ("delete", deleted)):
        if reply.status_code != 200:
            answer.command_errors.append(f"{name}: {reply.text[:300]}")


class Sampler(Generic[T]):
    """Calls `probe` every `every` seconds in a thread, keeping each result.

    A probe that raises is counted in `failures` and sampling goes on."""

    def __init__(self, probe: Callable[[], T], every: float = SAMPLE_EVERY) -> None:
        self.probe = probe
        self.every = every
        self.samples: list[T] = []
        self.failures: list[str] = []
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Sampler[T]:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stopped.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stopped.is_set():
            try:
                self.samples.append(self.probe())
            except Exception as exc:  # kept and reported, sampling goes on
                self.failures.append(f"{type(exc).__name__}: {exc}")
            self._stopped.wait(self.every)


def slots_used(url: str) -> int:
    """`slots.used` of the grid's /status."""
    reply = requests.get(url + "/status", timeout=10)
    return int(reply.json()["value"]["slots"]["used"])


def worker_descendants(grid: Grid) -> list[psutil.Process]:
    """Every process below the grid's workers: nodes, drivers, browsers."""
    found = []
    for name, child in list(grid.supervisor.children.items()):
        if name.startswith("worker-"):
            try:
                found += psutil.Process(child.pid).children(recursive=True)
            except psutil.NoSuchProcess:
                continue
    return found


def still_running(processes: Iterable[psutil.Process]) -> list[psutil.Process]:
    """Those of `processes` still running (a zombie nobody reaps is gone)."""
    left = []
    for process in processes:
        try:
            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                left.append(process)
        except psutil.Error:
            continue
    return left


# Session records


def session_records(client: redis.Redis) -> dict[str, dict[str, str]]:
    """Every session record in the grid's Redis, by session id."""
    records = {}
    for key in client.scan_iter(match=registry.SESSION_PREFIX + "*", count=500):
        session_id = str(key)[len(registry.SESSION_PREFIX) :]
        if ":" not in session_id:
            records[session_id] = registry.session(client, session_id)
    return records


def stamp(record: dict[str, str], state: str) -> float:
    """The time `record` entered `state`, as seconds since the epoch."""
    return float(record[f"{state}_at"])


def latencies(
    records: Sequence[dict[str, str]], answers: Sequence[Answer]
) -> dict[str, list[float]]:
    """Queue wait, start and handoff (from `records` that ran), client time."""
    ran = [r for r in records if "running_at" in r]
    return {
        "queue wait": [stamp(r, "provisioning") - stamp(r, "queued") for r in ran],
        "start": [stamp(r, "running") - stamp(r, "provisioning") for r in ran],
        "handoff": handoffs(records),
        "to session": [a.seconds for a in answers if a.session_id],
    }


def handoffs(records: Sequence[dict[str, str]]) -> list[float]:
    """Seconds from a session's end to the claim of a request that was
    already waiting then, on the same worker: how soon a freed slot is used."""
    ended = [r for r in records if "terminated_at" in r]
    gaps = []
    for record in records:
        if "provisioning_at" not in record:
            continue
        claimed = stamp(record, "provisioning")
        freed = [
            stamp(other, "terminated")
            for other in ended
            if other.get("worker") == record.get("worker")
            and stamp(record, "queued") < stamp(other, "terminated") <= claimed
        ]
        if freed:
            gaps.append(claimed - max(freed))
    return gaps


def percentile(values: Sequence[float], rank: float) -> float:
    """The nearest-rank `rank`th percentile of `values` (NaN when empty)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    index = max(math.ceil(rank / 100 * len(ordered)) - 1, 0)
    return ordered[index]


def summary(samples: dict[str, list[float]]) -> dict[str, dict[str, float]]:
    return {
        name: {_label(rank): round(percentile(values, rank), 3) for rank in PERCENTILES}
        for name, values in samples.items()
    }


def _label(rank: int) -> str:
    return "max" if rank == 100 else f"p{rank}"


def table(figures: dict[str, dict[str, float]]) -> str:
    labels = [_label(rank) for rank in PERCENTILES]
    lines = [f"{'seconds':<12}" + "".join(f"{label:>9}" for label in labels)]
    for name, row in figures.items():
        lines.append(f"{name:<12}" + "".join(f"{row[label]:>9.2f}" for label in labels))
    return "\n".join(lines)


# The run


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.burst",
        description="Many new sessions at once against a grid of few slots.",
    )
    for flag, default, meaning in (
        ("--requests", 40, "requests sent at once"),
        ("--workers", 2, "workers"),
        ("--slots", 2, "slots per worker"),
    ):
        parser.add_argument(
            flag, type=at_least_one, default=default, help=f"{meaning} ({default})"
        )
    parser.add_argument(
        "--output", type=pathlib.Path, default=OUTPUT, help=f"JSON ({OUTPUT})"
    )
    return parser.parse_args(argv)


def at_least_one(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def default_heartbeats() -> dict[str, str]:
    """The grid's default heartbeat settings, instead of the tests' fast ones."""
    return {
        "WEBGRID_HEARTBEAT_INTERVAL": str(DEFAULTS.heartbeat_interval),
        "WEBGRID_HEARTBEAT_TTL": str(DEFAULTS.heartbeat_ttl),
    }


@contextlib.contextmanager
def started_grid(workers: int, slots: int) -> Iterator[Grid]:
    """A grid of `workers` workers of `slots` slots, stopped at the end."""
    shutil.rmtree(LOGS, ignore_errors=True)
    LOGS.mkdir(parents=True)
    grid = Grid(LOGS, {"WEBGRID_SLOTS": str(slots), **default_heartbeats()})
    try:
        grid.start(workers=workers)
        total = workers * slots
        wait_for(
            lambda: grid.status()["slots"]["total"] == total,
            60,
            f"{workers} workers with {total} slots in all",
        )
        yield grid
    finally:
        below = worker_descendants(grid)
        kill_left([*below, *grid.stop()])


def kill_left(processes: list[psutil.Process]) -> None:
    """Kill, with a warning, whatever of `processes` outlived the grid."""
    psutil.wait_procs(still_running(processes), timeout=LEFTOVER_GRACE)
    left = still_running(processes)
    for process in left:
        with contextlib.suppress(psutil.Error):
            process.kill()
    if left:
        print(f"warning: killed {len(left)} processes the grid left", flush=True)


def run(args: argparse.Namespace) -> dict[str, Any]:
    with started_grid(args.workers, args.slots) as grid:
        print(f"grid ready at {grid.url}; sending {args.requests} requests", flush=True)
        begin = time.monotonic()
        with Sampler(lambda: slots_used(grid.url)) as used:
            answers = fire(grid.url, args.requests)
        wall = time.monotonic() - begin
        grid.wait_slots_free(timeout=30)
        records = session_records(grid.client)
    return report(args, answers, list(records.values()), used.samples, wall)


def report(
    args: argparse.Namespace,
    answers: list[Answer],
    records: list[dict[str, str]],
    used: list[int],
    wall: float,
) -> dict[str, Any]:
    """The run's figures, with what they depend on: the machine, its load."""
    samples = latencies(records, answers)
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "load_average_at_end": [round(load, 2) for load in os.getloadavg()],
            "python": platform.python_version(),
        },
        "requests": args.requests,
        "workers": args.workers,
        "slots_per_worker": args.slots,
        "sessions": sum(1 for a in answers if a.session_id),
        "errors": [a.error for a in answers if a.error],
        "lost": [a.failure for a in answers if a.failure],
        "wall_seconds": round(wall, 3),
        "max_slots_used": max(used, default=0),
        "seconds": summary(samples),
        "samples": samples,
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    result = run(args)
    print(
        f"{result['requests']} requests, {args.workers} workers x {args.slots} "
        f"slots: {result['sessions']} sessions, {len(result['errors'])} errors, "
        f"{len(result['lost'])} without answer, {result['wall_seconds']:.1f} s, "
        f"at most {result['max_slots_used']} slots used; load average "
        f"{result['machine']['load_average_at_end'][0]} on "
        f"{result['machine']['cpus']} CPUs"
    )
    print(table(result["seconds"]))
    for message in result["errors"] + result["lost"]:
        print(f"  {message}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written to {args.output}")
    return 0 if result["sessions"] == result["requests"] else 1


if __name__ == "__main__":
    sys.exit(main())
