"""Benchmark: time to a new session with nodes in containers, against local ones.

Starts two grids side by side, each the processes the integration tests start
(a Redis of its own, a manager, one worker, the proxy) with the grid's default
heartbeats, the same slots (--slots) and the same browsers: one whose worker
starts nodes as local processes (`WEBGRID_PROVISIONER=local`), one whose
worker starts them as containers of the node image
(`WEBGRID_PROVISIONER=docker`, the default limits of WEBGRID_DOCKER_*).

The Docker engine and the image are the tests' (see tests/docker_harness.py):
the engine at DOCKER_HOST or /var/run/docker.sock, else a dockerd started
here as root with its data under /var/cache/webgrid-docker; the image built
from `node_image/` on a debootstrapped base, or found up to date there.

For each browser (--browsers), the Selenium client opens a session through
each grid's proxy in turn, local then docker, --sessions times each after one
untimed warm-up round; it quits every session and waits for the grid's slot
to be free before the next one. For each session it takes:

- new session: how long `webdriver.Remote(...)` takes to return (as in
  bench.compare);
- node start: from the worker's claim to the node running, from the
  session's record (`running_at - provisioning_at`);
- slot free: from calling `quit()` until `/status` shows no slot in use
  (polled every 0.1 s).

It prints the median and p95 of each per provisioner and browser with the
ratio docker / local of the medians, and writes them with the raw samples,
the versions and the machine's load average to
bench/results/docker_start.json; the grids' logs go to
bench/results/docker-start-logs/. Run it as root from the repository's root:

    .venv/bin/python -m bench.docker_start [--sessions 10] [--browsers chrome,firefox]

It stops every process it started, removes the grids' containers and stops
the dockerd it started, also on Ctrl-C or an error. Nothing is downloaded;
all traffic stays on loopback.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import pathlib
import platform
import shutil
import signal
import statistics
import sys
from collections.abc import Iterator, Sequence
from importlib import metadata
from types import FrameType
from typing import Any

import docker
from selenium import webdriver
from selenium.webdriver.common.options import ArgOptions
from selenium.webdriver.remote.webdriver import WebDriver

from app.provisioners.docker import GRID_LABEL, grid_label
from bench import burst, report
from bench.compare import grid_code, grid_commit, progress, timed, warn
from tests import docker_harness
from tests.harness import Grid

RESULTS = pathlib.Path(__file__).parent / "results"
OUTPUT = RESULTS / "docker_start.json"
LOGS = RESULTS / "docker-start-logs"
LOCAL = "local"
DOCKER = "docker"
PROVISIONERS = (LOCAL, DOCKER)
OPTIONS: dict[str, type[ArgOptions]] = {
    "chrome": webdriver.ChromeOptions,
    "firefox": webdriver.FirefoxOptions,
}
MEASURES = ("new session ms", "node start ms", "slot free ms")
SLOT_FREE_TIMEOUT = 60.0

Samples = dict[str, report.Samples]
Figures = dict[str, report.Summary]


# The schedule


def schedule(browsers: Sequence[str]) -> list[tuple[str, str]]:
    """(browser, provisioner) in the order one round opens its sessions: each
    browser on the local grid, then on the docker one, so the two alternate
    throughout the run and each follows the other as often."""
    return [(b, p) for b in browsers for p in PROVISIONERS]


# Figures


def summarize(samples: Samples) -> Figures:
    """Per browser and measure: n, median and p95 of each provisioner, and on
    the docker row `x_local`, the ratio of its median to the local one."""
    figures = {}
    for browser, by_measure in samples.items():
        figures[browser] = report.summarize(by_measure)
        for rows in figures[browser].values():
            if rows.get(LOCAL, {}).get("median") and DOCKER in rows:
                ratio = rows[DOCKER]["median"] / rows[LOCAL]["median"]
                rows[DOCKER]["x_local"] = round(ratio, 3)
    return figures


def render(figures: Figures) -> str:
    head = f"{'browser':<8} {'measure':<15}"
    head += "".join(f" {p + ' p50':>11} {p + ' p95':>11}" for p in PROVISIONERS)
    lines = [f"{head} {'docker/local':>12}"]
    for browser, by_measure in figures.items():
        for measure, rows in by_measure.items():
            line = f"{browser:<8} {measure:<15}"
            for provisioner in PROVISIONERS:
                row = rows.get(provisioner, {})
                line += f" {_cell(row, 'median')} {_cell(row, 'p95')}"
            ratio = rows.get(DOCKER, {}).get("x_local")
            lines.append(line + f" {'-' if ratio is None else f'{ratio:.2f}':>12}")
    return "\n".join(lines)


def _cell(row: dict[str, float], key: str) -> str:
    return f"{row[key]:>11.0f}" if key in row else f"{'-':>11}"


# The engine, the image and the grids


def node_image(client: docker.DockerClient) -> str:
    """The tests' node image, built first if it is missing or out of date."""
    cache = docker_harness.cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    base = docker_harness.ensure_base_image(client, cache)
    build = docker_harness.ensure_node_image(client, cache)
    progress(f"base image: {base:.0f} s, node image: {build:.0f} s (0: cached)")
    return docker_harness.NODE_IMAGE


def grid_env(
    provisioner: str, args: argparse.Namespace, containers: dict[str, str]
) -> dict[str, str]:
    """One grid's settings; the two differ only in how nodes start, and the
    docker one also gets `containers`: its image and engine."""
    env = {
        **burst.default_heartbeats(),
        "WEBGRID_PROVISIONER": provisioner,
        "WEBGRID_SLOTS": str(args.slots),
        "WEBGRID_BROWSERS": ",".join(args.browsers),
    }
    return {**env, **containers} if provisioner == DOCKER else env


@contextlib.contextmanager
def started_grid(
    provisioner: str, env: dict[str, str], engine: docker.DockerClient
) -> Iterator[Grid]:
    """A grid of one worker; on the way out its processes and containers go."""
    logs = LOGS / provisioner
    shutil.rmtree(logs, ignore_errors=True)
    logs.mkdir(parents=True)
    grid = Grid(logs, env)
    try:
        progress(f"starting the {provisioner} grid (logs in {logs})")
        grid.start(workers=1)
        yield grid
    finally:
        progress(f"stopping the {provisioner} grid")
        below = burst.worker_descendants(grid)
        burst.kill_left([*below, *grid.stop()])
        label = f"{GRID_LABEL}={grid_label(grid.redis_url)}"
        removed = docker_harness.remove_containers(engine, label)
        if removed:
            warn(f"removed {removed} container(s) the {provisioner} grid left")


# Sessions


def open_session(grid: Grid, browser: str) -> WebDriver:
    return webdriver.Remote(command_executor=grid.url, options=OPTIONS[browser]())


def one_session(grid: Grid, browser: str) -> tuple[dict[str, float], str]:
    """Milliseconds of each of MEASURES for one session; its browser version."""
    driver, opened = timed(lambda: open_session(grid, browser))
    try:
        record = grid.record(str(driver.session_id))
        version = str(driver.capabilities.get("browserVersion", ""))
    finally:
        _, freed = timed(lambda: end_session(driver, grid))
    started = float(record["running_at"]) - float(record["provisioning_at"])
    seconds = (opened, started, freed)
    return {m: s * 1000 for m, s in zip(MEASURES, seconds, strict=True)}, version


def end_session(driver: WebDriver, grid: Grid) -> None:
    """Quit `driver`'s session and wait until the grid's slots are all free."""
    driver.quit()
    grid.wait_slots_free(SLOT_FREE_TIMEOUT)


def measure(
    grids: dict[str, Grid], browsers: Sequence[str], rounds: int
) -> tuple[Samples, dict[str, dict[str, str]], list[float]]:
    """Samples by browser, measure and provisioner; the browser versions each
    grid reported; the one-minute load average after each round."""
    samples: Samples = {
        b: {m: {p: [] for p in PROVISIONERS} for m in MEASURES} for b in browsers
    }
    versions: dict[str, dict[str, str]] = {p: {} for p in PROVISIONERS}
    loads = []
    # Round 0 is the warm-up: first imports, cold caches, first container.
    for turn in range(rounds + 1):
        for browser, provisioner in schedule(browsers):
            timings, version = one_session(grids[provisioner], browser)
            versions[provisioner][browser] = version
            for name in MEASURES if turn else ():
                samples[browser][name][provisioner].append(round(timings[name], 1))
        loads.append(round(os.getloadavg()[0], 2))
        progress(f"round {turn}/{rounds} done; load average {loads[-1]}")
    if versions[LOCAL] != versions[DOCKER]:
        warn(f"the grids ran different browsers: {versions}")
    return samples, versions, loads


# The run


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.docker_start",
        description="Time to a new session with the Docker provisioner against "
        "the local one, in the same run.",
    )
    add = parser.add_argument
    add("--sessions", type=burst.at_least_one, default=10, help="per grid (10)")
    add("--slots", type=burst.at_least_one, default=1, help="of each worker (1)")
    add("--browsers", default="chrome,firefox", help="comma separated (both)")
    add("--output", type=pathlib.Path, default=OUTPUT, help=f"JSON ({OUTPUT})")
    args = parser.parse_args(argv)
    args.browsers = [b.strip() for b in args.browsers.split(",") if b.strip()]
    unknown = sorted(set(args.browsers) - set(OPTIONS))
    if unknown or not args.browsers:
        parser.error(
            f"--browsers takes names from {', '.join(OPTIONS)}, comma separated; "
            f"got {', '.join(unknown) or 'none'}"
        )
    return args


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Get the engine and image, start both grids, measure, stop them all."""
    commit, code = grid_commit(), grid_code()
    with contextlib.ExitStack() as stack:
        engine = stack.enter_context(docker_harness.engine())
        client = engine.client()
        stack.callback(client.close)
        image = node_image(client)
        containers = {"WEBGRID_DOCKER_IMAGE": image, "DOCKER_HOST": engine.url}
        grids = {
            p: stack.enter_context(
                started_grid(p, grid_env(p, args, containers), client)
            )
            for p in PROVISIONERS
        }
        samples, browsers, loads = measure(grids, args.browsers, args.sessions)
        found = {
            "engine": client.version().get("Version", ""),
            "engine_started_here": engine.process is not None,
            "image": image,
            "image_id": client.images.get(image).short_id,
        }
    if grid_code() != code:
        warn("the grid's code changed during the run; local nodes ran the new code")
    return build_report(args, samples, {**found, "browsers": browsers}, commit, loads)


def build_report(
    args: argparse.Namespace,
    samples: Samples,
    found: dict[str, Any],
    commit: str,
    loads: list[float],
) -> dict[str, Any]:
    machine = report.machine()
    parameters = {"sessions": args.sessions, "slots": args.slots}
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": {**machine, "load_average_1min_per_round": loads},
        "parameters": {**parameters, "browsers": args.browsers},
        "versions": {
            "grid_commit": commit,
            "python": platform.python_version(),
            "selenium_client": metadata.version("selenium"),
            **found,
        },
        "results": summarize(samples),
        "samples": samples,
    }


def write(result: dict[str, Any], output: pathlib.Path) -> None:
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2) + "\n")
    loads = result["machine"]["load_average_1min_per_round"]
    print(render(result["results"]))
    print(
        f"{result['parameters']['sessions']} sessions per grid and browser; "
        f"load average (1 min) {min(loads):.1f} to {max(loads):.1f}, median "
        f"{statistics.median(loads):.1f}, on {result['machine']['nproc']} CPUs"
    )
    print(f"written to {output}")


def interrupt_once(signum: int, _: FrameType | None) -> None:
    """Stop the run; further signals wait, so they cannot cut the clean-up."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise KeyboardInterrupt(signal.Signals(signum).name)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    # Selenium must not look drivers up on the internet.
    os.environ["SE_OFFLINE"] = "true"
    signal.signal(signal.SIGINT, interrupt_once)
    signal.signal(signal.SIGTERM, interrupt_once)
    try:
        write(run(args), args.output)
    except KeyboardInterrupt:
        progress("interrupted; what was started has been stopped")
        return 130
    except docker_harness.HarnessError as exc:
        warn(str(exc))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
