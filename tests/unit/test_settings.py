"""Reading and validating the grid's settings from an environment."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from app.errors import SettingsError
from app.settings import ENV_NAMES, Settings, from_environ


def bad_setting(environ: dict[str, str]) -> str:
    """The message of the SettingsError that `environ` raises."""
    with pytest.raises(SettingsError) as caught:
        from_environ(environ)
    return str(caught.value)


def test_empty_environment_gives_the_defaults() -> None:
    settings = from_environ({})
    assert settings == Settings()
    assert settings.proxy_port == 4444
    assert settings.slots == 4
    assert settings.spare_nodes == 1
    assert settings.browsers == ("chrome",)
    assert settings.headless is True
    assert settings.queue_timeout == 300.0
    assert settings.heartbeat_interval < settings.heartbeat_ttl


def test_every_field_has_an_environment_variable() -> None:
    fields = {field.name for field in dataclasses.fields(Settings)}
    assert set(ENV_NAMES) == fields
    assert len(set(ENV_NAMES.values())) == len(fields)


@pytest.mark.parametrize(
    ("name", "raw", "field", "expected"),
    [
        ("REDIS_URL", "redis://db:6380/2", "redis_url", "redis://db:6380/2"),
        ("WEBGRID_HOST", " 10.0.0.5 ", "host", "10.0.0.5"),
        ("WEBGRID_PROXY_PORT", "8080", "proxy_port", 8080),
        ("WEBGRID_PROXY_PORT", "65535", "proxy_port", 65535),
        ("WEBGRID_PROXY_BIND", "127.0.0.1", "proxy_bind", "127.0.0.1"),
        ("WEBGRID_MANAGER_PORT", "0", "manager_port", 0),
        ("WEBGRID_MANAGER_PORT", "5000", "manager_port", 5000),
        ("WEBGRID_SLOTS", "1", "slots", 1),
        ("WEBGRID_SLOTS", " 8 ", "slots", 8),
        ("WEBGRID_SPARE_NODES", "0", "spare_nodes", 0),
        ("WEBGRID_SPARE_NODES", "2", "spare_nodes", 2),
        ("WEBGRID_BROWSERS", "firefox", "browsers", ("firefox",)),
        ("WEBGRID_BROWSERS", "Chrome, FIREFOX", "browsers", ("chrome", "firefox")),
        ("WEBGRID_BROWSERS", "chrome,,", "browsers", ("chrome",)),
        ("WEBGRID_CHROME_BINARY", "/opt/c/chrome", "chrome_binary", "/opt/c/chrome"),
        ("WEBGRID_CHROMEDRIVER", "/opt/c/driver", "chromedriver", "/opt/c/driver"),
        ("WEBGRID_FIREFOX_BINARY", "/opt/ff", "firefox_binary", "/opt/ff"),
        ("WEBGRID_GECKODRIVER", "/opt/gecko", "geckodriver", "/opt/gecko"),
        ("WEBGRID_HEADLESS", "false", "headless", False),
        ("WEBGRID_HEADLESS", "0", "headless", False),
        ("WEBGRID_HEADLESS", "No", "headless", False),
        ("WEBGRID_HEADLESS", "off", "headless", False),
        ("WEBGRID_HEADLESS", "TRUE", "headless", True),
        ("WEBGRID_HEADLESS", "1", "headless", True),
        ("WEBGRID_HEADLESS", "yes", "headless", True),
        ("WEBGRID_HEADLESS", " on ", "headless", True),
        ("WEBGRID_IDLE_TIMEOUT", "30", "idle_timeout", 30.0),
        ("WEBGRID_IDLE_TIMEOUT", "0.5", "idle_timeout", 0.5),
        ("WEBGRID_STARTUP_TIMEOUT", "90", "startup_timeout", 90.0),
        ("WEBGRID_READY_TIMEOUT", "15", "ready_timeout", 15.0),
        ("WEBGRID_QUEUE_TIMEOUT", "1e3", "queue_timeout", 1000.0),
        ("WEBGRID_HEARTBEAT_INTERVAL", "1", "heartbeat_interval", 1.0),
        ("WEBGRID_HEARTBEAT_TTL", "30", "heartbeat_ttl", 30.0),
        ("WEBGRID_SESSION_RETENTION", "60", "session_retention", 60.0),
        ("WEBGRID_LOG_LEVEL", "debug", "log_level", "DEBUG"),
        ("WEBGRID_LOG_LEVEL", " warning ", "log_level", "WARNING"),
    ],
)
def test_variable_is_parsed(name: str, raw: str, field: str, expected: Any) -> None:
    value = getattr(from_environ({name: raw}), field)
    assert value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize("raw", ["", "   "])
def test_blank_variable_keeps_the_default(raw: str) -> None:
    assert from_environ({"WEBGRID_SLOTS": raw, "WEBGRID_HOST": raw}) == Settings()


def test_unrelated_variables_are_ignored() -> None:
    assert from_environ({"PATH": "/bin", "WEBGRID_UNKNOWN": "x"}) == Settings()


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("WEBGRID_SLOTS", "0"),
        ("WEBGRID_SLOTS", "-2"),
        ("WEBGRID_SLOTS", "abc"),
        ("WEBGRID_SLOTS", "2.5"),
        ("WEBGRID_SPARE_NODES", "-1"),
        ("WEBGRID_SPARE_NODES", "one"),
        ("WEBGRID_SPARE_NODES", "101"),
        ("WEBGRID_PROXY_PORT", "70000"),
        ("WEBGRID_PROXY_PORT", "-1"),
        ("WEBGRID_PROXY_PORT", "http"),
        ("WEBGRID_MANAGER_PORT", "65536"),
        ("WEBGRID_BROWSERS", "safari"),
        ("WEBGRID_BROWSERS", "chrome,safari"),
        ("WEBGRID_BROWSERS", ","),
        ("WEBGRID_HEADLESS", "maybe"),
        ("WEBGRID_HEADLESS", "2"),
        ("WEBGRID_IDLE_TIMEOUT", "-1"),
        ("WEBGRID_IDLE_TIMEOUT", "0"),
        ("WEBGRID_IDLE_TIMEOUT", "nan"),
        ("WEBGRID_IDLE_TIMEOUT", "5m"),
        ("WEBGRID_STARTUP_TIMEOUT", "0"),
        ("WEBGRID_READY_TIMEOUT", "-1"),
        ("WEBGRID_QUEUE_TIMEOUT", "-300"),
        ("WEBGRID_HEARTBEAT_INTERVAL", "soon"),
        ("WEBGRID_HEARTBEAT_TTL", "0"),
        ("WEBGRID_SESSION_RETENTION", "-1"),
        ("WEBGRID_LOG_LEVEL", "verbose"),
    ],
)
def test_bad_value_names_the_variable_and_the_value(name: str, raw: str) -> None:
    message = bad_setting({name: raw})
    assert f"{name}={raw!r}" in message


def test_unknown_browser_message_lists_the_known_ones() -> None:
    message = bad_setting({"WEBGRID_BROWSERS": "safari"})
    assert "'safari'" in message
    assert "chrome" in message and "firefox" in message


@pytest.mark.parametrize(("interval", "ttl"), [("10", "10"), ("10", "5"), ("2", "1.5")])
def test_heartbeat_ttl_must_be_longer_than_the_interval(
    interval: str, ttl: str
) -> None:
    message = bad_setting(
        {"WEBGRID_HEARTBEAT_INTERVAL": interval, "WEBGRID_HEARTBEAT_TTL": ttl}
    )
    assert "WEBGRID_HEARTBEAT_TTL" in message
    assert "WEBGRID_HEARTBEAT_INTERVAL" in message


def test_interval_alone_longer_than_default_ttl_is_refused() -> None:
    message = bad_setting({"WEBGRID_HEARTBEAT_INTERVAL": "20"})
    assert "WEBGRID_HEARTBEAT_TTL" in message


def test_heartbeat_ttl_just_over_the_interval_is_accepted() -> None:
    settings = from_environ(
        {"WEBGRID_HEARTBEAT_INTERVAL": "5", "WEBGRID_HEARTBEAT_TTL": "5.5"}
    )
    assert (settings.heartbeat_interval, settings.heartbeat_ttl) == (5.0, 5.5)


def test_settings_are_frozen() -> None:
    settings = from_environ({})
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.slots = 8  # type: ignore[misc]


def test_repr_names_every_field() -> None:
    text = repr(from_environ({"WEBGRID_SLOTS": "3"}))
    assert text.startswith("Settings(")
    assert "slots=3" in text
    for field in dataclasses.fields(Settings):
        assert f"{field.name}=" in text


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("WEBGRID_HEARTBEAT_TTL", "inf"),
        ("WEBGRID_SESSION_RETENTION", "infinity"),
        ("WEBGRID_QUEUE_TIMEOUT", "1e400"),
    ],
)
def test_infinite_seconds_are_refused(name: str, raw: str) -> None:
    assert f"{name}={raw!r}" in bad_setting({name: raw})
