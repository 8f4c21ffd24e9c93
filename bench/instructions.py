"""Benchmark: what the proxy costs per command, in instructions.

Times and CPU seconds on this shared machine move by a third from one
minute to the next; the number of instructions a process executes for the
same work does not. This counts, with valgrind's callgrind, the user-space
instructions one hop executes per `GET /session/<id>/title`, between a
client and a stand-in driver that answers at once (bench.standins), so that
no browser competes for the CPU:

- relay: the least a gevent hop can do, one read and one write each way,
  nothing parsed (bench.standins);
- proxy: the grid's proxy (`python -m app.web proxy`, on an embedded Redis
  that routes one session straight to the stand-in driver, as the proxy
  does for a node on its own host).

The two run in turn, each under callgrind with instrumentation switched on
only while the timed commands pass. Kernel work (the system calls
themselves) is not counted. The difference is what the proxy does beyond
moving bytes: parsing, routing, swapping session ids, building heads.

    .venv/bin/python -m bench.instructions [--commands 2000]

Needs valgrind (`apt-get install valgrind`). Writes
bench/results/instructions.json.
"""

from __future__ import annotations

import argparse
import datetime
import http.client
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import redis

from app import embedded_redis, registry
from bench import compare, ends

SESSION = "bench-session"
DRIVER_SESSION = "driver-session"
HEADERS = {
    "Accept": "application/json",
    "Content-Type": "application/json;charset=UTF-8",
    "User-Agent": "selenium/4.50.0 (python linux)",
}
WARMUP = 300
START_TIMEOUT = 120.0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--commands", type=int, default=2000)
    parser.add_argument(
        "--output", type=pathlib.Path, default=ends.RESULTS / "instructions.json"
    )
    return parser.parse_args(argv)


def totals_of(dump: str) -> int:
    """The instruction count in a callgrind dump's `totals:` line."""
    for line in dump.splitlines():
        if line.startswith("totals:"):
            return int(line.split()[1])
    raise ValueError("the callgrind dump has no totals line")


def sends(port: int, count: int, connection: http.client.HTTPConnection) -> None:
    """`count` title commands on one kept-alive connection."""
    for _ in range(count):
        connection.request("GET", f"/session/{SESSION}/title", headers=HEADERS)
        answer = connection.getresponse()
        body = answer.read()
        if answer.status != 200 or b"A page title" not in body:
            raise RuntimeError(f"port {port} answered {answer.status}: {body[:200]!r}")


@contextmanager
def under_callgrind(
    command: list[str], env: dict[str, str], port: int, folder: pathlib.Path
) -> Iterator[subprocess.Popen[bytes]]:
    """Run `command` under callgrind, instrumentation off, until it serves
    HTTP on `port`; kill it on the way out (its count is dumped by then)."""
    process = subprocess.Popen(
        [
            "valgrind",
            "--tool=callgrind",
            "--instr-atstart=no",
            f"--callgrind-out-file={folder}/callgrind.%p",
            *command,
        ],
        cwd=ends.ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_serving(port, process)
        yield process
    finally:
        process.kill()
        process.wait()


def _wait_serving(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"the hop on port {port} exited with {process.returncode}"
            )
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            connection.request("GET", "/status")
            connection.getresponse().read()
            connection.close()
            return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"nothing served on port {port} within {START_TIMEOUT:g} s")


def count(process: subprocess.Popen[bytes], port: int, commands: int) -> None:
    """Send `commands` through `port` with `process` counting, then have it
    write its count out."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    sends(port, WARMUP, connection)
    control = ["callgrind_control", "--instr=on", str(process.pid)]
    subprocess.run(control, check=True, capture_output=True)
    sends(port, commands, connection)
    subprocess.run(
        ["callgrind_control", "--dump", str(process.pid)],
        check=True,
        capture_output=True,
    )
    connection.close()


def measure(hop: str, commands: int, driver_port: int, redis_url: str) -> float:
    """Instructions per command of `hop` ("relay" or "proxy")."""
    port = ends.free_port()
    env = dict(os.environ)
    if hop == "relay":
        relay = ["relay", str(port), str(driver_port)]
        command = [sys.executable, "-m", "bench.standins", *relay]
    else:
        command = [sys.executable, "-m", "app.web", "proxy"]
        env.update(
            REDIS_URL=redis_url,
            WEBGRID_PROXY_PORT=str(port),
            WEBGRID_LOG_LEVEL="WARNING",
        )
    with tempfile.TemporaryDirectory(prefix="webgrid-callgrind-") as name:
        folder = pathlib.Path(name)
        with under_callgrind(command, env, port, folder) as process:
            count(process, port, commands)
            dumps = sorted(folder.glob(f"callgrind.{process.pid}.*"))
            if not dumps:
                raise RuntimeError(f"callgrind wrote no dump for the {hop}")
            return totals_of(dumps[0].read_text()) / commands


def route_to(redis_url: str, driver_port: int) -> None:
    """Route SESSION straight to the stand-in driver, as a local node would."""
    client = redis.Redis.from_url(redis_url)
    address = f"127.0.0.1:{driver_port}"
    client.set(registry.route_key(SESSION), address)
    client.set(registry.direct_key(SESSION), f"{address} {DRIVER_SESSION}")
    client.close()


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    driver_port = ends.free_port()
    driver = subprocess.Popen(
        [sys.executable, "-m", "bench.standins", "driver", str(driver_port)],
        cwd=ends.ROOT,
    )
    try:
        with embedded_redis.serve() as redis_url:
            route_to(redis_url, driver_port)
            found = {
                hop: measure(hop, args.commands, driver_port, redis_url)
                for hop in ("relay", "proxy")
            }
    finally:
        driver.kill()
        driver.wait()
    report(found, args)
    return 0


def report(found: dict[str, float], args: argparse.Namespace) -> None:
    own = found["proxy"] - found["relay"]
    print(f"instructions per command, {args.commands} commands (user space):")
    for hop, value in found.items():
        print(f"  {hop:<6} {value:>10,.0f}")
    print(f"  the proxy's own work: {own:,.0f} ({own / found['proxy']:.0%})")
    results = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "grid_commit": compare.grid_commit(),
        "commands": args.commands,
        "instructions per command": found,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written to {args.output}")


if __name__ == "__main__":
    sys.exit(main())
