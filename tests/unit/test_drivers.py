"""How a node shapes the capabilities and command of each browser's driver."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from app.node import drivers
from app.settings import Settings

HEADLESS = Settings(
    chrome_binary="/opt/chromium/chrome",
    chromedriver="/opt/chromium/chromedriver",
    firefox_binary="/opt/firefox/firefox",
    geckodriver="/opt/gecko/geckodriver",
    headless=True,
)
HEADED = Settings(headless=False)


def chrome_options(config: Settings, asked: dict[str, Any]) -> dict[str, Any]:
    caps = drivers.driver_capabilities(config, "chrome", asked)
    return caps["goog:chromeOptions"]  # type: ignore[no-any-return]


def firefox_options(config: Settings, asked: dict[str, Any]) -> dict[str, Any]:
    caps = drivers.driver_capabilities(config, "firefox", asked)
    return caps["moz:firefoxOptions"]  # type: ignore[no-any-return]


def with_args(key: str, *args: str) -> dict[str, Any]:
    return {key: {"args": list(args)}}


# -- what every browser gets ---------------------------------------------------


@pytest.mark.parametrize("browser", ["chrome", "firefox"])
def test_grid_keys_are_removed_and_the_rest_kept(browser: str) -> None:
    asked = {
        "browserName": "chromium",
        "browserVersion": "156",
        "platformName": "linux",
        "webgrid:options": {"idleTimeout": 30},
        "se:name": "login test",
        "acceptInsecureCerts": True,
        "pageLoadStrategy": "eager",
    }
    caps = drivers.driver_capabilities(HEADLESS, browser, asked)
    for key in ("browserVersion", "platformName", "webgrid:options", "se:name"):
        assert key not in caps
    assert caps["browserName"] == browser
    assert caps["acceptInsecureCerts"] is True
    assert caps["pageLoadStrategy"] == "eager"


@pytest.mark.parametrize(
    ("browser", "key"),
    [("chrome", "goog:chromeOptions"), ("firefox", "moz:firefoxOptions")],
)
def test_the_client_s_capabilities_are_not_changed(browser: str, key: str) -> None:
    asked = {"browserName": browser, **with_args(key, "--lang=fr")}
    before = copy.deepcopy(asked)
    drivers.driver_capabilities(HEADLESS, browser, asked)
    assert asked == before


# -- chrome --------------------------------------------------------------------


def test_chrome_gets_the_grid_s_flags_and_binary() -> None:
    options = chrome_options(HEADLESS, {})
    assert options["binary"] == "/opt/chromium/chrome"
    for flag in (*drivers.CHROME_ARGS, "--headless=new"):
        assert options["args"].count(flag) == 1
    assert "--no-sandbox" in options["args"]


def test_chrome_without_headless_gets_no_headless_flag() -> None:
    args = chrome_options(HEADED, {})["args"]
    assert not [a for a in args if a.startswith("--headless")]
    assert "--no-sandbox" in args


def test_chrome_keeps_the_client_s_args_first_and_once() -> None:
    asked = with_args("goog:chromeOptions", "--window-size=800,600", "--no-sandbox")
    args = chrome_options(HEADLESS, asked)["args"]
    assert args[:2] == ["--window-size=800,600", "--no-sandbox"]
    assert args.count("--no-sandbox") == 1
    assert args.count("--headless=new") == 1


@pytest.mark.parametrize("flag", ["--headless", "--headless=new", "--headless=old"])
def test_chrome_headless_flag_of_the_client_is_not_doubled(flag: str) -> None:
    args = chrome_options(HEADLESS, with_args("goog:chromeOptions", flag))["args"]
    assert [a for a in args if a.startswith("--headless")] == [flag]


def test_chrome_keeps_the_client_s_binary_and_other_options() -> None:
    asked = {
        "goog:chromeOptions": {"binary": "/usr/bin/google-chrome", "prefs": {"a": 1}}
    }
    options = chrome_options(HEADLESS, asked)
    assert options["binary"] == "/usr/bin/google-chrome"
    assert options["prefs"] == {"a": 1}


def test_chrome_headed_client_headless_flag_is_kept() -> None:
    options = chrome_options(HEADED, with_args("goog:chromeOptions", "--headless=new"))
    assert options["args"].count("--headless=new") == 1


# -- firefox -------------------------------------------------------------------


def test_firefox_gets_headless_and_the_grid_s_binary() -> None:
    options = firefox_options(HEADLESS, {})
    assert options["binary"] == "/opt/firefox/firefox"
    assert options["args"] == ["-headless"]


def test_firefox_without_headless_gets_no_flag() -> None:
    assert firefox_options(HEADED, {})["args"] == []


@pytest.mark.parametrize("flag", ["-headless", "--headless"])
def test_firefox_headless_flag_of_the_client_is_not_doubled(flag: str) -> None:
    asked = with_args("moz:firefoxOptions", "-private", flag)
    assert firefox_options(HEADLESS, asked)["args"] == ["-private", flag]


def test_firefox_keeps_the_client_s_binary_and_args() -> None:
    asked = {"moz:firefoxOptions": {"binary": "/opt/ff-nightly", "args": ["-private"]}}
    options = firefox_options(HEADLESS, asked)
    assert options["binary"] == "/opt/ff-nightly"
    assert options["args"] == ["-private", "-headless"]


# -- driver commands -----------------------------------------------------------


def test_chrome_driver_command() -> None:
    command = drivers.driver_command(HEADLESS, "chrome", 9515)
    assert command == ["/opt/chromium/chromedriver", "--port=9515"]


def test_firefox_driver_command_uses_the_configured_geckodriver() -> None:
    command = drivers.driver_command(HEADLESS, "firefox", 4445)
    assert command == [
        "/opt/gecko/geckodriver",
        "--port",
        "4445",
        "--host",
        "127.0.0.1",
    ]


def test_each_geckodriver_gets_its_own_bidi_port() -> None:
    command = drivers.driver_command(HEADLESS, "firefox", 4445, bidi_port=41001)
    assert command[-2:] == ["--websocket-port", "41001"]
    chrome = drivers.driver_command(HEADLESS, "chrome", 9515, bidi_port=41001)
    assert "41001" not in " ".join(chrome)


def test_geckodriver_falls_back_to_the_path_without_the_wheel(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(drivers.importlib.util, "find_spec", lambda name: None)
    assert drivers.geckodriver_path(Settings(geckodriver="")) == "geckodriver"
