"""Benchmark: the grid against a bare chromedriver and Selenium Grid 4.

The three remote ends run side by side; every measurement goes round them
in turn, a different one first each round, so that noise on the machine
falls on all alike. Each end gets the same headless Chromium options. The
grid and Grid 4 get the same number of slots (--slots) and idle timeout.

- new session: how long `webdriver.Remote(...)` takes to return, over
  --sessions rounds after one untimed warm-up round (quit is not timed);
- quit: how long `quit()` takes to return;
- teardown: from `quit()` returning until the browser processes of that
  session are gone (the benchmark waits for this before the next round;
  Grid 4 answers quit only once they are);
- command: the round trip of `driver.title`, in one open session per end,
  on a page served by the benchmark on loopback; --commands times each,
  in blocks of --block, after --warmup untimed calls;
- throughput: --slots sessions per end, each driven by a thread of its own
  for --throughput-commands commands at once; commands per second over
  --throughput-rounds rounds (see bench.throughput);
- memory: RSS and PSS of each end's control plane, when no session is open:
  right after start, and idle again after all the above (see bench.memory).
  For the grid: its one process, serving proxy, manager and worker, and
  the worker's spare node (its Redis is shown apart); for Grid 4: its JVM;
  for the bare end: chromedriver.

It prints the median and p95 of each, with the ratio of each end's median
to the bare chromedriver's and to Grid 4's, then checks the targets of
issue 4 (see bench.report). It writes the same, with the raw samples, the
date, the machine and the versions, to bench/results/latest.json.

Run it from the repository's root:

    .venv/bin/python -m bench.compare [--sessions 10] [--commands 300]

or `make bench`. A quick run: --sessions 5 --commands 200
--throughput-commands 100 --throughput-rounds 3. It starts the grid
(`python -m app.run`, embedded Redis), /usr/bin/chromedriver and Grid 4
(installed on first use, see bench.grid4) on free loopback ports, with their
output in bench/results/<end>.log, and stops them all at the end, also on
Ctrl-C or an error; then it warns about, and kills, any process it started
that is still running. Nothing but Grid 4's npm package is downloaded; all
other traffic stays on loopback.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import http.server
import json
import os
import pathlib
import platform
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from importlib import metadata
from types import FrameType
from typing import Any, TypeVar

import psutil
import urllib3
from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.remote.webdriver import WebDriver

from app.node.drivers import CHROME_ARGS as GRID_CHROME_ARGS
from bench import ends, grid4, memory, processes, report, throughput

T = TypeVar("T")
Drivers = dict[str, list[WebDriver]]

CHROMIUM = "/usr/bin/chromium"
# The flags the grid gives Chromium, passed to every end: same browsers.
CHROME_ARGS = ("--headless=new", *GRID_CHROME_ARGS)
END_NAMES = (report.BARE, report.GRID, report.GRID4)
PAGE_TITLE = "webgrid bench"
PAGE = f"<!doctype html><title>{PAGE_TITLE}</title><p>benchmark page</p>"
TEARDOWN_TIMEOUT = 15.0
LEFTOVER_GRACE = 5.0
MEMORY_PAUSE = 0.2
OUTPUT = ends.RESULTS / "latest.json"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.compare",
        description="Compare the grid with a bare chromedriver and Selenium "
        "Grid 4 on this machine.",
    )
    add = parser.add_argument
    add("--sessions", type=int, default=10, help="new sessions per end (10)")
    add("--commands", type=int, default=300, help="timed commands per end (300)")
    add("--warmup", type=int, default=20, help="untimed commands a session (20)")
    add("--block", type=int, default=25, help="commands in a row per end (25)")
    add(
        "--throughput-commands",
        type=int,
        default=200,
        help="commands per session in a throughput round (200)",
    )
    add("--throughput-rounds", type=int, default=5, help="throughput rounds (5)")
    add("--slots", type=int, default=4, help="sessions at once, both grids (4)")
    add("--session-timeout", type=float, default=300, help="idle timeout s (300)")
    add("--memory-samples", type=int, default=5, help="memory snapshots (5)")
    add("--ends", default=",".join(END_NAMES), help="ends to run (all three)")
    add("--grid4-version", default=grid4.VERSION, help=f"({grid4.VERSION})")
    add("--output", type=pathlib.Path, default=OUTPUT, help=f"JSON ({OUTPUT})")
    args = parser.parse_args(argv)
    check_args(parser, args)
    return args


def check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    counts = ("sessions", "commands", "block", "slots", "memory_samples")
    for flag in (*counts, "throughput_commands", "throughput_rounds"):
        if getattr(args, flag) < 1:
            parser.error(f"--{flag.replace('_', '-')} must be at least 1")
    args.ends = [name.strip() for name in args.ends.split(",") if name.strip()]
    unknown = sorted(set(args.ends) - set(END_NAMES))
    if unknown or report.BARE not in args.ends:
        parser.error(
            f"--ends takes names from {', '.join(END_NAMES)} and needs "
            f"{report.BARE}, the baseline; got {', '.join(args.ends)}"
        )


def make_ends(args: argparse.Namespace) -> list[ends.End]:
    """The ends asked for, in the order of END_NAMES."""
    factories: dict[str, Callable[[], ends.End]] = {
        report.BARE: ends.bare,
        report.GRID: lambda: ends.grid(args.slots, args.session_timeout),
        report.GRID4: lambda: grid4.end(
            args.slots, args.session_timeout, args.grid4_version
        ),
    }
    return [factories[name]() for name in END_NAMES if name in args.ends]


def chrome_options() -> webdriver.ChromeOptions:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in CHROME_ARGS:
        options.add_argument(argument)
    return options


def rotation(items: Sequence[T], turn: int) -> list[T]:
    """`items` rotated by `turn`, so each one goes first in its turn."""
    shift = turn % len(items)
    return [*items[shift:], *items[:shift]]


def timed(call: Callable[[], T]) -> tuple[T, float]:
    """What `call` returns, and how many seconds it took."""
    begin = time.perf_counter()
    result = call()
    return result, time.perf_counter() - begin


# New sessions


def open_session(end: ends.End) -> WebDriver:
    try:
        return webdriver.Remote(command_executor=end.url, options=chrome_options())
    except (WebDriverException, OSError, urllib3.exceptions.HTTPError) as exc:
        first_line = (str(exc).strip().splitlines() or [repr(exc)])[0]
        raise ends.EndError(
            f"{end.name} did not open a session ({first_line}); "
            f"see {ends.log_path(end.name)}"
        ) from exc


def one_session(end: ends.End, tracker: processes.Tracker) -> dict[str, float]:
    """Milliseconds to open a session on `end`, to quit it, for its browser
    to go after that."""
    driver, opened = timed(lambda: open_session(end))
    try:
        browsers = tracker.browsers(end.name)
    finally:
        _, quitting = timed(driver.quit)
    _, teardown = timed(lambda: processes.wait_gone(browsers, TEARDOWN_TIMEOUT))
    left = [p for p in browsers if processes.is_alive(p)]
    if left:
        warn(f"{end.name} kept {processes.describe(left)} after quit")
    seconds = {"new session": opened, "quit": quitting, "teardown": teardown}
    return {f"{measure} ms": value * 1000 for measure, value in seconds.items()}


def measure_sessions(
    remote_ends: Sequence[ends.End], rounds: int, tracker: processes.Tracker
) -> report.Samples:
    measures = ("new session ms", "quit ms", "teardown ms")
    samples: report.Samples = {m: {e.name: [] for e in remote_ends} for m in measures}
    # Round 0 is the warm-up: first imports, cold caches, first browser.
    for turn in range(rounds + 1):
        for end in rotation(remote_ends, turn):
            timings = one_session(end, tracker)
            for measure in measures if turn else ():
                samples[measure][end.name].append(timings[measure])
        progress(f"sessions: round {turn}/{rounds} done")
    return samples


# Commands


class PageHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = PAGE.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def serve_page() -> Iterator[str]:
    """Serve PAGE on a free loopback port in a thread; yield its URL."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), PageHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def sessions_on(
    remote_ends: Sequence[ends.End], page: str, each: int, warmup: int
) -> Iterator[Drivers]:
    """`each` sessions per end, showing `page`; all quit on the way out."""
    drivers: Drivers = {end.name: [] for end in remote_ends}
    try:
        for _ in range(each):
            for end in remote_ends:
                drivers[end.name].append(showing(open_session(end), page, end))
        for driver in (d for started in drivers.values() for d in started):
            time_title(driver, warmup)
        yield drivers
    finally:
        for driver in (d for started in drivers.values() for d in started):
            with contextlib.suppress(WebDriverException, OSError):
                driver.quit()


def showing(driver: WebDriver, page: str, end: ends.End) -> WebDriver:
    """`driver`, once it shows `page` (quit if it cannot)."""
    try:
        driver.get(page)
        if driver.title != PAGE_TITLE:
            raise ends.EndError(f"{end.name} did not show the benchmark page")
    except BaseException:
        driver.quit()
        raise
    return driver


def time_title(driver: WebDriver, count: int) -> list[float]:
    """Milliseconds each of `count` `driver.title` round trips took."""
    milliseconds = []
    for _ in range(count):
        begin = time.perf_counter()
        _ = driver.title
        milliseconds.append((time.perf_counter() - begin) * 1000)
    return milliseconds


def measure_commands(drivers: Drivers, count: int, block: int) -> report.Samples:
    """Round trips on each end's first session, in blocks taken in turn."""
    samples: dict[str, list[float]] = {name: [] for name in drivers}
    blocks = -(-count // block)
    for turn in range(blocks):
        size = min(block, count - turn * block)
        for name in rotation(list(drivers), turn):
            samples[name] += time_title(drivers[name][0], size)
    return {"command ms": samples}


def measure_throughput(drivers: Drivers, count: int, rounds: int) -> report.Samples:
    """Commands per second with all of each end's sessions driven at once."""
    samples: dict[str, list[float]] = {name: [] for name in drivers}
    for turn in range(rounds):
        for name in rotation(list(drivers), turn):
            samples[name].append(throughput.rate(drivers[name], count))
        progress(f"throughput: round {turn + 1}/{rounds} done")
    return {"throughput cmd/s": samples}


def browser_versions(drivers: Drivers) -> dict[str, dict[str, str]]:
    """The browser and driver version each end reported for its session."""
    versions = {}
    for name, started in drivers.items():
        caps = started[0].capabilities
        chrome = caps.get("chrome", {})
        driver_version = str(chrome.get("chromedriverVersion", "")).split(" ")[0]
        versions[name] = {
            "browserVersion": str(caps.get("browserVersion", "")),
            "chromedriverVersion": driver_version,
        }
    if len({v["browserVersion"] for v in versions.values()}) > 1:
        warn(f"the ends run different browsers: {versions}")
    return versions


# Memory


class MemoryLog:
    """Control-plane samples and per-part medians, by phase and end."""

    def __init__(self, tracker: processes.Tracker, samples: int) -> None:
        self.tracker = tracker
        self.count = samples
        self.samples: report.Samples = {}
        self.parts: dict[str, dict[str, Any]] = {}

    def take(self, phase: str, remote_ends: Sequence[ends.End]) -> None:
        progress(f"memory: {phase}")
        self.parts[phase] = {}
        for end in remote_ends:
            taken = memory.measure(end, self.tracker, self.count, MEMORY_PAUSE)
            for kind, values in taken["control_plane"].items():
                measure = f"{kind.upper()} {phase} MiB"
                self.samples.setdefault(measure, {})[end.name] = values
            self.parts[phase][end.name] = taken["parts"]


# The run


def run(
    args: argparse.Namespace,
    remote_ends: Sequence[ends.End],
    tracker: processes.Tracker,
) -> dict[str, Any]:
    """Start the ends, take every measurement, return the report."""
    commit, code = grid_commit(), grid_code()
    for end in remote_ends:
        progress(f"starting {end.name}")
        end.start()
    tracker.scan()

    memory_log = MemoryLog(tracker, args.memory_samples)
    memory_log.take("start", remote_ends)
    samples, browsers = measure_sessions_and_commands(args, remote_ends, tracker)
    memory_log.take("idle", remote_ends)
    samples.update(memory_log.samples)

    check_run(tracker, code)
    found = {"grid_commit": commit, "browsers": browsers}
    return build_report(args, remote_ends, samples, found, memory_log.parts)


def measure_sessions_and_commands(
    args: argparse.Namespace,
    remote_ends: Sequence[ends.End],
    tracker: processes.Tracker,
) -> tuple[report.Samples, dict[str, dict[str, str]]]:
    """Every measurement that opens sessions; the browsers the ends ran."""
    samples = measure_sessions(remote_ends, args.sessions, tracker)
    with serve_page() as page:
        with sessions_on(remote_ends, page, 1, args.warmup) as drivers:
            browsers = browser_versions(drivers)
            progress(f"commands: {args.commands} per end")
            samples.update(measure_commands(drivers, args.commands, args.block))
        progress(f"throughput: {args.slots} sessions per end")
        with sessions_on(remote_ends, page, args.slots, args.warmup) as drivers:
            count, rounds = args.throughput_commands, args.throughput_rounds
            samples.update(measure_throughput(drivers, count, rounds))
    return samples, browsers


def check_run(tracker: processes.Tracker, code: str) -> None:
    """Warn if anything reached off this machine or the grid's code moved."""
    outside = processes.outside_peers(tracker.scan())
    if outside:
        warn(f"connections off this machine: {', '.join(outside)}")
    if grid_code() != code:
        warn(
            f"the grid's code ({', '.join(GRID_CODE)}) changed during the run; "
            "nodes started after the change ran the new code"
        )


def build_report(
    args: argparse.Namespace,
    remote_ends: Sequence[ends.End],
    samples: report.Samples,
    found: dict[str, Any],
    parts: dict[str, dict[str, Any]],
) -> dict[str, Any]:
    summary = report.summarize(samples)
    parameters = {key: value for key, value in vars(args).items() if key != "output"}
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": report.machine(),
        "versions": versions(args, found),
        "parameters": parameters,
        "commands": {end.name: getattr(end, "command", None) for end in remote_ends},
        "results": summary,
        "targets": report.verdicts(summary),
        "memory_parts_mib": parts,
        "samples": {
            measure: {
                end: [round(v, 3) for v in values] for end, values in by_end.items()
            }
            for measure, by_end in samples.items()
        },
    }


def versions(args: argparse.Namespace, found: dict[str, Any]) -> dict[str, Any]:
    """Every version the figures depend on; `found` has what the run saw."""
    bare = found["browsers"][report.BARE]
    listed: dict[str, Any] = {
        "chromium": bare["browserVersion"],
        "chromedriver": bare["chromedriverVersion"],
        "python": platform.python_version(),
        "selenium_client": metadata.version("selenium"),
        **found,
    }
    if report.GRID4 in args.ends:
        jar = grid4.jar_path(args.grid4_version)
        listed["grid4_jar"] = grid4.jar_version(jar)
        listed["java"] = grid4.java_version()
    return listed


GRID_CODE = ("app", "celeryconfig.py")


def grid_commit() -> str:
    """The commit the grid runs from, '+dirty' if its code has changes on top."""
    head = git("rev-parse", "--short", "HEAD")
    dirty = git("status", "--porcelain", "--", *GRID_CODE)
    return f"{head}+dirty" if dirty else head or "unknown"


def grid_code() -> str:
    """What the grid's code is now: its trees at HEAD, and the changes on top."""
    trees = git("rev-parse", *(f"HEAD:{path}" for path in GRID_CODE))
    return trees + git("diff", "HEAD", "--", *GRID_CODE)


def git(*arguments: str) -> str:
    try:
        done = subprocess.run(
            ["git", "-C", str(ends.ROOT), *arguments], capture_output=True, text=True
        )
    except OSError:
        return ""
    return done.stdout.strip()


def write(results: dict[str, Any], output: pathlib.Path) -> None:
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=2) + "\n")
    print(report.render(results["results"]))
    print("control-plane parts, idle:")
    print(report.render_parts(results["memory_parts_mib"]["idle"]))
    print(report.render_verdicts(results["targets"]) or "targets: the grid did not run")
    print(f"written to {output}")


# Stopping


def stop_all(remote_ends: Sequence[ends.End], tracker: processes.Tracker) -> None:
    """Stop every end, then warn about (and kill) any process left behind."""
    for end in reversed(remote_ends):
        progress(f"stopping {end.name}")
        try:
            end.stop()
        except (OSError, subprocess.SubprocessError) as exc:
            warn(f"{end.name} could not be stopped: {exc}")
    left = tracker.leftovers(LEFTOVER_GRACE)
    if left:
        warn(f"left running after the ends stopped: {processes.describe(left)}")
        warn("those processes were started by this run; they are killed now")
        for process in left:
            with contextlib.suppress(psutil.Error):
                process.kill()


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def warn(message: str) -> None:
    progress(f"warning: {message}")


def interrupt(signum: int, _: FrameType | None) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    # Selenium must not look drivers up on the internet.
    os.environ["SE_OFFLINE"] = "true"
    signal.signal(signal.SIGTERM, interrupt)
    tracker = processes.Tracker()
    remote_ends: list[ends.End] = []
    try:
        remote_ends += make_ends(args)
        write(run(args, remote_ends, tracker), args.output)
    except KeyboardInterrupt:
        progress("interrupted; stopping what was started")
        return 130
    except ends.EndError as exc:
        warn(str(exc))
        return 1
    finally:
        # NOTE: a second Ctrl-C must not cut the clean-up short.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stop_all(remote_ends, tracker)
    return 0


if __name__ == "__main__":
    sys.exit(main())
