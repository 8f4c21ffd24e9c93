"""The grid's settings: one typed object, read from the environment once.

Every field maps to one environment variable (listed in the README with its
default). A value that cannot be parsed raises `SettingsError` naming the
variable, so a typo stops a component at start rather than hours later.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
from collections.abc import Callable, Mapping
from typing import Any

from app.errors import SettingsError

BROWSERS_KNOWN = ("chrome", "firefox")
PROVISIONERS = ("local", "docker")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Settings:
    """What every component of the grid reads from its environment."""

    redis_url: str = "redis://127.0.0.1:6379/0"
    host: str = "127.0.0.1"
    proxy_port: int = 4444
    proxy_bind: str = "0.0.0.0"
    public_url: str = ""
    username: str = ""
    password: str = ""
    max_body_mb: int = 256
    manager_port: int = 0
    slots: int = 4
    spare_nodes: int = 1
    browsers: tuple[str, ...] = ("chrome",)
    provisioner: str = "local"
    chrome_binary: str = "/usr/bin/chromium"
    chromedriver: str = "/usr/bin/chromedriver"
    firefox_binary: str = "/usr/bin/firefox-esr"
    geckodriver: str = ""
    headless: bool = True
    idle_timeout: float = 300.0
    max_idle_timeout: float = 3600.0
    first_command_timeout: float = 60.0
    startup_timeout: float = 60.0
    queue_timeout: float = 300.0
    drain_timeout: float = 1800.0
    ready_timeout: float = 120.0
    heartbeat_interval: float = 2.0
    heartbeat_ttl: float = 10.0
    session_retention: float = 86400.0
    log_level: str = "INFO"

    def __repr__(self) -> str:
        fields = ", ".join(
            f"{f.name}={'***' if f.name == 'password' else getattr(self, f.name)!r}"
            for f in dataclasses.fields(self)
        )
        return f"Settings({fields})"


# Environment variable, field name and parser of each setting.
_ENV: tuple[tuple[str, str], ...] = (
    ("REDIS_URL", "redis_url"),
    ("WEBGRID_HOST", "host"),
    ("WEBGRID_PROXY_PORT", "proxy_port"),
    ("WEBGRID_PROXY_BIND", "proxy_bind"),
    ("WEBGRID_PUBLIC_URL", "public_url"),
    ("WEBGRID_USERNAME", "username"),
    ("WEBGRID_PASSWORD", "password"),
    ("WEBGRID_MAX_BODY_MB", "max_body_mb"),
    ("WEBGRID_MANAGER_PORT", "manager_port"),
    ("WEBGRID_SLOTS", "slots"),
    ("WEBGRID_SPARE_NODES", "spare_nodes"),
    ("WEBGRID_BROWSERS", "browsers"),
    ("WEBGRID_PROVISIONER", "provisioner"),
    ("WEBGRID_CHROME_BINARY", "chrome_binary"),
    ("WEBGRID_CHROMEDRIVER", "chromedriver"),
    ("WEBGRID_FIREFOX_BINARY", "firefox_binary"),
    ("WEBGRID_GECKODRIVER", "geckodriver"),
    ("WEBGRID_HEADLESS", "headless"),
    ("WEBGRID_IDLE_TIMEOUT", "idle_timeout"),
    ("WEBGRID_MAX_IDLE_TIMEOUT", "max_idle_timeout"),
    ("WEBGRID_FIRST_COMMAND_TIMEOUT", "first_command_timeout"),
    ("WEBGRID_STARTUP_TIMEOUT", "startup_timeout"),
    ("WEBGRID_QUEUE_TIMEOUT", "queue_timeout"),
    ("WEBGRID_DRAIN_TIMEOUT", "drain_timeout"),
    ("WEBGRID_READY_TIMEOUT", "ready_timeout"),
    ("WEBGRID_HEARTBEAT_INTERVAL", "heartbeat_interval"),
    ("WEBGRID_HEARTBEAT_TTL", "heartbeat_ttl"),
    ("WEBGRID_SESSION_RETENTION", "session_retention"),
    ("WEBGRID_LOG_LEVEL", "log_level"),
)

ENV_NAMES = {field: name for name, field in _ENV}


def _whole(text: str, low: int, high: int, what: str) -> int:
    try:
        number = int(text)
    except ValueError:
        number = low - 1
    if not low <= number <= high:
        raise ValueError(f"{what} is a whole number from {low} to {high}")
    return number


def _seconds(text: str, *, zero_ok: bool) -> float:
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    low_ok = seconds >= 0 if zero_ok else seconds > 0
    if not (low_ok and math.isfinite(seconds)):
        least = "0 or more" if zero_ok else "greater than 0"
        raise ValueError(f"it must be a finite number of seconds, {least}")
    return seconds


def _parse_port(text: str) -> int:
    return _whole(text, 0, 65535, "a port")


def _parse_positive_int(text: str) -> int:
    return _whole(text, 1, 100_000, "it")


def _parse_count(text: str) -> int:
    return _whole(text, 0, 100, "it")


def _parse_seconds(text: str) -> float:
    return _seconds(text, zero_ok=False)


def _parse_seconds_or_zero(text: str) -> float:
    return _seconds(text, zero_ok=True)


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError("use true or false")


def _parse_browsers(text: str) -> tuple[str, ...]:
    names = tuple(n.strip().lower() for n in text.split(",") if n.strip())
    if not names:
        raise ValueError("name at least one browser, for example 'chrome'")
    unknown = [n for n in names if n not in BROWSERS_KNOWN]
    if unknown:
        known = ", ".join(BROWSERS_KNOWN)
        raise ValueError(f"unknown browser {unknown[0]!r}; known: {known}")
    return names


def _parse_public_url(text: str) -> str:
    url = text.strip().rstrip("/")
    scheme, sep, rest = url.partition("://")
    if scheme not in ("http", "https") or not sep or not rest or "/" in rest:
        raise ValueError(
            "give the grid's public scheme, host and port, like "
            "https://grid.example.com:4444"
        )
    return url


def _parse_provisioner(text: str) -> str:
    name = text.strip().lower()
    if name not in PROVISIONERS:
        raise ValueError(f"use {' or '.join(PROVISIONERS)}")
    return name


def _parse_log_level(text: str) -> str:
    level = text.strip().upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ValueError("use DEBUG, INFO, WARNING or ERROR")
    return level


def _parse_text(text: str) -> str:
    return text.strip()


_PARSERS: dict[str, Callable[[str], Any]] = {
    "proxy_port": _parse_port,
    "manager_port": _parse_port,
    "slots": _parse_positive_int,
    "spare_nodes": _parse_count,
    "max_body_mb": _parse_positive_int,
    "browsers": _parse_browsers,
    "provisioner": _parse_provisioner,
    "headless": _parse_bool,
    "idle_timeout": _parse_seconds,
    "max_idle_timeout": _parse_seconds,
    "first_command_timeout": _parse_seconds,
    "startup_timeout": _parse_seconds,
    "queue_timeout": _parse_seconds,
    "drain_timeout": _parse_seconds_or_zero,
    "ready_timeout": _parse_seconds,
    "heartbeat_interval": _parse_seconds,
    "heartbeat_ttl": _parse_seconds,
    "session_retention": _parse_seconds,
    "log_level": _parse_log_level,
    "public_url": _parse_public_url,
}


def from_environ(environ: Mapping[str, str]) -> Settings:
    """Build settings from `environ`; raise `SettingsError` on a bad value."""
    values: dict[str, Any] = {}
    for name, field in _ENV:
        raw = environ.get(name)
        if raw is None or raw.strip() == "":
            continue
        parse = _PARSERS.get(field, _parse_text)
        try:
            values[field] = parse(raw)
        except ValueError as exc:
            raise SettingsError(f"{name}={raw!r} is not valid: {exc}") from None
    settings = Settings(**values)
    _check_consistency(settings)
    return settings


def _check_consistency(settings: Settings) -> None:
    if bool(settings.username) != bool(settings.password):
        raise SettingsError(
            "set both WEBGRID_USERNAME and WEBGRID_PASSWORD to require basic "
            "auth, or neither to serve without it"
        )
    if settings.heartbeat_ttl <= settings.heartbeat_interval:
        raise SettingsError(
            "WEBGRID_HEARTBEAT_TTL must be longer than WEBGRID_HEARTBEAT_INTERVAL, "
            "or every heartbeat expires before the next one; "
            f"got {settings.heartbeat_ttl} <= {settings.heartbeat_interval}"
        )


@functools.cache
def get() -> Settings:
    """The settings of this process, read from `os.environ` on first use."""
    return from_environ(os.environ)
