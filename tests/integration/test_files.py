"""Selenium's file extensions through the grid: upload and managed downloads."""

from __future__ import annotations

import base64
import io
import pathlib
import zipfile

import requests
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.file_detector import LocalFileDetector

from tests.harness import Grid, wait_for
from tests.integration.test_failures import start_session
from tests.integration.test_w3c_errors import assert_w3c_error


def zipped(files: dict[str, bytes]) -> str:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return base64.b64encode(buffer.getvalue()).decode()


def test_upload_with_the_local_file_detector(
    grid: Grid, pages: str, tmp_path: pathlib.Path
) -> None:
    local = tmp_path / "report.csv"
    local.write_text("a,b\n1,2\n")
    driver = webdriver.Remote(grid.url, options=webdriver.ChromeOptions())
    try:
        driver.file_detector = LocalFileDetector()
        driver.get(pages + "/files.html")
        driver.find_element(By.ID, "upload").send_keys(str(local))
        name, size = driver.execute_script(
            "const f = document.getElementById('upload').files[0];"
            "return [f.name, f.size];"
        )
        assert (name, size) == ("report.csv", 8)
    finally:
        driver.quit()


def test_managed_downloads(grid: Grid, pages: str, tmp_path: pathlib.Path) -> None:
    options = webdriver.ChromeOptions()
    options.enable_downloads = True
    driver = webdriver.Remote(grid.url, options=options)
    try:
        assert driver.capabilities["se:downloadsEnabled"] is True
        driver.get(pages + "/files.html")
        driver.find_element(By.ID, "download").click()
        wait_for(lambda: driver.get_downloadable_files() == ["data.txt"], 20, "file")
        driver.download_file("data.txt", str(tmp_path))
        assert (tmp_path / "data.txt").read_text() == "grid download contents\n"
        driver.delete_downloadable_files()
        assert driver.get_downloadable_files() == []
    finally:
        driver.quit()


def test_bad_uploads_are_invalid_arguments(grid: Grid) -> None:
    session_id = start_session(grid)
    url = f"{grid.url}/session/{session_id}/se/file"
    try:
        for body in (
            {"file": "not base64 zip"},
            {"file": zipped({"a.txt": b"a", "b.txt": b"b"})},
            {"nofile": 1},
        ):
            answer = requests.post(url, json=body, timeout=30)
            assert_w3c_error(answer, 400, "invalid argument")
    finally:
        requests.delete(f"{grid.url}/session/{session_id}", timeout=30)


def test_downloads_need_the_capability(grid: Grid) -> None:
    session_id = start_session(grid)
    try:
        answer = requests.get(f"{grid.url}/session/{session_id}/se/files", timeout=30)
        message = assert_w3c_error(answer, 404, "unknown command")
        assert "se:downloadsEnabled" in message
    finally:
        requests.delete(f"{grid.url}/session/{session_id}", timeout=30)
