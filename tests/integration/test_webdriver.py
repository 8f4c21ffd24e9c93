"""A real Selenium client drives real headless Chromium through the grid."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from tests.harness import Grid, wait_for

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def chrome(url: str) -> WebDriver:
    return webdriver.Remote(url, options=webdriver.ChromeOptions())


@pytest.fixture
def driver(grid: Grid) -> Iterator[WebDriver]:
    session = chrome(grid.url)
    yield session
    session.quit()


def test_find_click_and_type(driver: WebDriver, pages: str) -> None:
    driver.get(pages + "/form.html")
    assert driver.title == "Grid test form"
    driver.find_element(By.ID, "name").send_keys("grid")
    driver.find_element(By.ID, "greet").click()
    assert driver.find_element(By.ID, "greeting").text == "Hello, grid!"


def test_screenshot_is_a_png(driver: WebDriver, pages: str) -> None:
    driver.get(pages + "/form.html")
    png = driver.get_screenshot_as_png()
    assert png.startswith(PNG_MAGIC)
    assert len(png) > 1000


def test_execute_script(driver: WebDriver, pages: str) -> None:
    driver.get(pages + "/form.html")
    assert driver.execute_script("return 6 * 7;") == 42
    heading = driver.execute_script("return document.getElementById('heading')")
    assert heading.text == "A form"
    assert driver.execute_async_script("arguments[0](document.title)") == (
        "Grid test form"
    )


def test_cookies(driver: WebDriver, pages: str) -> None:
    driver.get(pages + "/form.html")
    driver.add_cookie({"name": "flavour", "value": "oat"})
    cookie = driver.get_cookie("flavour")
    assert cookie is not None and cookie["value"] == "oat"
    driver.delete_cookie("flavour")
    assert driver.get_cookie("flavour") is None


def test_second_window(driver: WebDriver, pages: str) -> None:
    driver.get(pages + "/form.html")
    first = driver.current_window_handle
    driver.find_element(By.ID, "open").click()
    handles = wait_for(lambda: _two(driver.window_handles), 10, "a second window")
    second = next(h for h in handles if h != first)
    driver.switch_to.window(second)
    assert wait_for(lambda: driver.title == "Second window", 10, "second page")
    driver.close()
    driver.switch_to.window(first)
    assert driver.title == "Grid test form"


def _two(handles: list[str]) -> list[str] | None:
    return handles if len(handles) == 2 else None


def test_answer_carries_grid_id_and_driver_capabilities(grid: Grid) -> None:
    session = chrome(grid.url)
    try:
        assert len(session.session_id or "") == 36
        caps = session.capabilities
        assert caps["browserName"] in ("chrome", "chrome-headless-shell")
        assert caps["browserVersion"].split(".")[0].isdigit()
        assert "goog:chromeOptions" in caps
        record = grid.record(session.session_id or "")
        assert record["state"] == "running"
    finally:
        session.quit()


def test_quit_leaves_no_process_and_frees_the_slot_at_once(grid: Grid) -> None:
    session = chrome(grid.url)
    session_id = session.session_id or ""
    assert grid.session_processes(session_id), "the session should have processes"
    assert grid.status()["slots"]["used"] == 1

    session.quit()
    quit_at = time.monotonic()
    grid.wait_slots_free(timeout=5)
    freed_after = time.monotonic() - quit_at

    assert grid.session_processes(session_id) == []
    assert freed_after < 1.0, f"slot freed {freed_after:.2f} s after quit"
    record = grid.record(session_id)
    assert record["state"] == "terminated"
    assert record["reason"] == "deleted by the client"


def test_legacy_wd_hub_base_path(grid: Grid, pages: str) -> None:
    session = chrome(grid.url + "/wd/hub")
    try:
        session.get(pages + "/form.html")
        assert session.title == "Grid test form"
    finally:
        session.quit()


def test_firefox_through_the_grid(make_grid: Callable[..., Grid], pages: str) -> None:
    grid = make_grid(WEBGRID_BROWSERS="chrome,firefox")
    session = webdriver.Remote(grid.url, options=webdriver.FirefoxOptions())
    session_id = session.session_id or ""
    try:
        assert session.capabilities["browserName"] == "firefox"
        session.get(pages + "/form.html")
        session.find_element(By.ID, "name").send_keys("fox")
        session.find_element(By.ID, "greet").click()
        assert session.find_element(By.ID, "greeting").text == "Hello, fox!"
    finally:
        session.quit()
    grid.wait_slots_free(timeout=15)
    assert grid.session_processes(session_id) == []
