"""in_os_thread: slow scans leave a patched process's gevent loop free."""

from __future__ import annotations

import subprocess
import sys

import pytest

SAME_THREAD = (
    "import threading; from app.patching import in_os_thread; "
    "print(in_os_thread(threading.get_native_id) == threading.get_native_id())"
)


@pytest.mark.parametrize(
    ("patch", "same"),
    [("", "True"), ("from gevent import monkey; monkey.patch_all(); ", "False")],
    ids=["unpatched-runs-here", "patched-runs-in-a-system-thread"],
)
def test_in_os_thread_runs_where_it_should(patch: str, same: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", patch + SAME_THREAD],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert done.stdout.strip() == same


def test_in_os_thread_returns_and_raises_what_func_does() -> None:
    code = (
        "from gevent import monkey; monkey.patch_all(); "
        "from app.patching import in_os_thread; "
        "print(in_os_thread(sorted, [3, 1, 2])); "
        "in_os_thread(int, 'not a number')"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert done.stdout.strip() == "[1, 2, 3]"
    assert done.returncode == 1
    assert "ValueError: invalid literal for int()" in done.stderr
