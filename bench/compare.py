"""Benchmark: the grid against a bare chromedriver, on this machine.

Both remote ends run side by side; every measurement alternates between
them round by round (or block by block), so that noise on the machine falls
on both alike. Each end gets the same headless Chromium options.

- new session: how long `webdriver.Remote(...)` takes to return, over
  --sessions rounds after one untimed warm-up round (quit is not timed);
- teardown: from `quit()` returning until the browser processes of that
  session are gone (the benchmark waits for this before the next round);
- command: the round trip of `driver.title`, in one open session per end,
  on a page served by the benchmark on loopback; --commands times each,
  in blocks of --block, after --warmup untimed calls.

It prints the median and p95 of each, with the ratio of each end's median
to the bare chromedriver's, and writes the same, with the raw samples, the
date, the machine and the browser versions, to bench/results/latest.json.

Run it from the repository's root:

    .venv/bin/python -m bench.compare [--sessions 10] [--commands 300]

or `make bench`. It starts the grid (`python -m app.run`, embedded Redis)
and /usr/bin/chromedriver on free loopback ports (their output goes to
bench/results/<end>.log) and stops both at the end, also on Ctrl-C or an
error; then it warns about, and kills, any process it started that is still
running. Nothing is downloaded; all traffic stays on loopback.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import http.server
import json
import os
import pathlib
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from types import FrameType
from typing import Any, TypeVar

import psutil
import urllib3
from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.remote.webdriver import WebDriver

from app.node.drivers import CHROME_ARGS as GRID_CHROME_ARGS
from bench import ends, processes

T = TypeVar("T")
Samples = dict[str, dict[str, list[float]]]

CHROMIUM = "/usr/bin/chromium"
# The flags the grid gives Chromium, passed to both ends: same browsers.
CHROME_ARGS = ("--headless=new", *GRID_CHROME_ARGS)
BASELINE = "bare"
RATIO = f"median_ratio_to_{BASELINE}"
PAGE_TITLE = "webgrid bench"
PAGE = f"<!doctype html><title>{PAGE_TITLE}</title><p>benchmark page</p>"
TEARDOWN_TIMEOUT = 15.0
LEFTOVER_GRACE = 5.0
OUTPUT = ends.RESULTS / "latest.json"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.compare",
        description="Compare the grid with a bare chromedriver on this machine.",
    )
    parser.add_argument(
        "--sessions", type=int, default=10, help="new sessions per end (10)"
    )
    parser.add_argument(
        "--commands", type=int, default=300, help="timed commands per end (300)"
    )
    parser.add_argument(
        "--warmup", type=int, default=20, help="untimed commands per end (20)"
    )
    parser.add_argument(
        "--block", type=int, default=25, help="commands in a row per end (25)"
    )
    parser.add_argument(
        "--output", type=pathlib.Path, default=OUTPUT, help=f"JSON ({OUTPUT})"
    )
    args = parser.parse_args(argv)
    for flag in ("sessions", "commands", "block"):
        if getattr(args, flag) < 1:
            parser.error(f"--{flag} must be at least 1")
    return args


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


def one_session(end: ends.End, tracker: processes.Tracker) -> tuple[float, float]:
    """Seconds to open a session on `end`, then for its browser to go."""
    driver, opened = timed(lambda: open_session(end))
    try:
        browsers = tracker.browsers(end.name)
    finally:
        driver.quit()
    quit_returned = time.perf_counter()
    left = processes.wait_gone(browsers, TEARDOWN_TIMEOUT)
    if left:
        warn(f"{end.name} kept {processes.describe(left)} after quit")
    return opened, time.perf_counter() - quit_returned


def measure_sessions(
    remote_ends: Sequence[ends.End], rounds: int, tracker: processes.Tracker
) -> Samples:
    samples: Samples = {"new session": {}, "teardown": {}}
    for measure in samples.values():
        measure.update({end.name: [] for end in remote_ends})
    # Round 0 is the warm-up: first imports, cold caches, first browser.
    for turn in range(rounds + 1):
        for end in rotation(remote_ends, turn):
            opened, teardown = one_session(end, tracker)
            if turn:
                samples["new session"][end.name].append(opened)
                samples["teardown"][end.name].append(teardown)
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
    remote_ends: Sequence[ends.End], page: str
) -> Iterator[dict[str, WebDriver]]:
    """One session per end, showing `page`; all quit on the way out."""
    drivers: dict[str, WebDriver] = {}
    try:
        for end in remote_ends:
            drivers[end.name] = open_session(end)
            drivers[end.name].get(page)
            if drivers[end.name].title != PAGE_TITLE:
                raise RuntimeError(f"{end.name} did not show the benchmark page")
        yield drivers
    finally:
        for driver in drivers.values():
            with contextlib.suppress(WebDriverException):
                driver.quit()


def time_title(driver: WebDriver, count: int) -> list[float]:
    seconds = []
    for _ in range(count):
        begin = time.perf_counter()
        _ = driver.title
        seconds.append(time.perf_counter() - begin)
    return seconds


def measure_commands(
    drivers: dict[str, WebDriver], count: int, warmup: int, block: int
) -> Samples:
    for driver in drivers.values():
        time_title(driver, warmup)
    samples: dict[str, list[float]] = {name: [] for name in drivers}
    blocks = -(-count // block)
    for turn in range(blocks):
        size = min(block, count - turn * block)
        for name in rotation(list(drivers), turn):
            samples[name] += time_title(drivers[name], size)
    return {"command": samples}


def browser_versions(drivers: dict[str, WebDriver]) -> dict[str, dict[str, str]]:
    """The browser and driver version each end reported for its session."""
    versions = {}
    for name, driver in drivers.items():
        caps = driver.capabilities
        chrome = caps.get("chrome", {})
        driver_version = str(chrome.get("chromedriverVersion", "")).split(" ")[0]
        versions[name] = {
            "browserVersion": str(caps.get("browserVersion", "")),
            "chromedriverVersion": driver_version,
        }
    if len({v["browserVersion"] for v in versions.values()}) > 1:
        warn(f"the ends run different browsers: {versions}")
    return versions


# Reporting


def p95(values: Sequence[float]) -> float:
    if len(values) < 2:
        return values[0]
    return statistics.quantiles(values, n=20, method="inclusive")[-1]


def summarize(samples: Samples) -> dict[str, dict[str, dict[str, float]]]:
    """Per measure and end: n, median and p95 in ms, median ratio to bare."""
    return {
        measure: {
            end: figures(values, statistics.median(by_end[BASELINE]))
            for end, values in by_end.items()
        }
        for measure, by_end in samples.items()
    }


def figures(seconds: Sequence[float], baseline: float) -> dict[str, float]:
    median = statistics.median(seconds)
    return {
        "n": len(seconds),
        "median_ms": round(median * 1000, 3),
        "p95_ms": round(p95(seconds) * 1000, 3),
        RATIO: round(median / baseline, 3) if baseline else 0.0,
    }


def render(summary: dict[str, dict[str, dict[str, float]]]) -> str:
    header = f"{'measure':<12} {'end':<6} {'n':>5} {'median ms':>10} {'p95 ms':>10}"
    lines = [f"{header} {'x ' + BASELINE + ' (median)':>16}"]
    for measure, by_end in summary.items():
        for end, row in by_end.items():
            lines.append(
                f"{measure:<12} {end:<6} {row['n']:>5} {row['median_ms']:>10.2f} "
                f"{row['p95_ms']:>10.2f} {row[RATIO]:>16.2f}"
            )
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "memory_mib": psutil.virtual_memory().total // 2**20,
        "cpu_model": cpu_model(),
    }


def cpu_model() -> str:
    with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
        for line in cpuinfo:
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                return value.strip()
    return "unknown"


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def warn(message: str) -> None:
    progress(f"warning: {message}")


# The run


def run(
    args: argparse.Namespace,
    remote_ends: Sequence[ends.End],
    tracker: processes.Tracker,
) -> dict[str, Any]:
    """Start the ends, take every measurement, return the report."""
    for end in remote_ends:
        progress(f"starting {end.name}")
        end.start()
    tracker.scan()

    samples = measure_sessions(remote_ends, args.sessions, tracker)
    with serve_page() as page, sessions_on(remote_ends, page) as drivers:
        versions = browser_versions(drivers)
        progress(f"commands: {args.commands} per end")
        samples.update(
            measure_commands(drivers, args.commands, args.warmup, args.block)
        )
    return report(args, samples, versions)


def report(
    args: argparse.Namespace, samples: Samples, versions: dict[str, dict[str, str]]
) -> dict[str, Any]:
    parameters = ("sessions", "commands", "warmup", "block")
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "chromium": versions[BASELINE]["browserVersion"],
        "browsers": versions,
        "parameters": {key: vars(args)[key] for key in parameters},
        "results": summarize(samples),
        "samples_ms": {
            measure: {
                end: [round(s * 1000, 3) for s in values]
                for end, values in by_end.items()
            }
            for measure, by_end in samples.items()
        },
    }


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


def interrupt(signum: int, _: FrameType | None) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    # Selenium must not look drivers up on the internet.
    os.environ["SE_OFFLINE"] = "true"
    signal.signal(signal.SIGTERM, interrupt)
    tracker = processes.Tracker()
    remote_ends = [ends.bare(), ends.grid()]
    try:
        results = run(args, remote_ends, tracker)
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(results, indent=2) + "\n")
        print(render(results["results"]))
        print(f"written to {args.output}")
    except KeyboardInterrupt:
        progress("interrupted; stopping what was started")
        return 130
    except ends.EndError as exc:
        warn(str(exc))
        return 1
    finally:
        stop_all(remote_ends, tracker)
    return 0


if __name__ == "__main__":
    sys.exit(main())
