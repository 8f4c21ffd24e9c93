"""Fixtures shared by every test: real grids and pages to browse."""

from __future__ import annotations

import os
import pathlib
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.harness import Grid

os.environ.setdefault("SE_OFFLINE", "true")

PAGES = pathlib.Path(__file__).parent / "pages"


@pytest.fixture(scope="session")
def make_grid(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., Grid]]:
    """Start grids, each on its own Redis; all stop at the session's end."""
    grids: list[Grid] = []

    def make(
        workers: int = 1,
        redis_args: tuple[str, ...] = (),
        one_process: bool = False,
        **env: str,
    ) -> Grid:
        logs = tmp_path_factory.mktemp("grid")
        grid = Grid(logs, env, redis_args)
        grids.append(grid)
        return grid.start(workers=workers, one_process=one_process)

    yield make
    left = []
    for grid in grids:
        left += grid.stop()
    assert not left, f"processes of grid sessions left running: {left}"


@pytest.fixture(scope="session")
def grid(make_grid: Callable[..., Grid]) -> Grid:
    """The default grid: one worker of two Chromium slots."""
    return make_grid(WEBGRID_SLOTS="2")


class _Pages(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        name = self.path.strip("/").split("?")[0] or "index.html"
        target = PAGES / name
        if not target.is_file():
            self.send_error(404)
            return
        body = target.read_bytes()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture(scope="session")
def pages() -> Iterator[str]:
    """Base URL of the test pages, served on loopback."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Pages)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()
