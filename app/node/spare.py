"""A spare node: a node process started before its session, awaiting orders.

A worker keeps a node process ready (`python -m app.node --spare`) with its
interpreter up, gevent's patches applied and the agent imported, so that a
new session does not wait for Python to start. The spare blocks on its
stdin for one line of orders: a JSON object of the environment variables a
cold node is started with. It applies them as a cold node has them from
birth, then runs the agent like any node. At end of file (its worker closed
the pipe, or died) it exits, having held nothing.

Every node, spare or cold, is given the write end of a pipe
(WEBGRID_NODE_STARTED_FD) that it closes once its session has started and
the client has its answer, or once the start failed: its worker then starts
the next spare, which would otherwise take CPU from the browser starting.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Mapping
from typing import BinaryIO

from app.errors import SettingsError

SPARE_FLAG = "--spare"
STARTED_FD_ENV = "WEBGRID_NODE_STARTED_FD"


def encode_orders(orders: Mapping[str, str]) -> bytes:
    """One line for a spare's stdin: `orders` as a JSON object."""
    # NOTE: JSON escapes newlines inside strings, so the line stays one line.
    return json.dumps(dict(orders)).encode() + b"\n"


def parse_orders(line: bytes) -> dict[str, str]:
    """The environment variables in a line of orders; raise `SettingsError`
    if it is not a JSON object of strings."""
    try:
        orders = json.loads(line)
    except ValueError as exc:
        raise SettingsError(f"a spare node's orders are not JSON: {exc}") from None
    if not isinstance(orders, dict) or not all(
        isinstance(name, str) and isinstance(value, str)
        for name, value in orders.items()
    ):
        raise SettingsError(
            "a spare node's orders must be one JSON object of environment "
            "variables, names and values both strings; spares are ordered by "
            "their worker"
        )
    return orders


def await_orders(stream: BinaryIO) -> dict[str, str] | None:
    """Block until the worker sends orders; None at end of file."""
    line = stream.readline()
    if not line:
        return None
    return parse_orders(line)


def apply_orders(orders: Mapping[str, str]) -> None:
    """Become the node a cold start with `orders` in its environment is.

    The driver and browser inherit `os.environ` (the session's mark,
    TMPDIR); the node's files go to the session's folder, its working one.
    """
    os.environ.update(orders)
    folder = orders.get("TMPDIR")
    if folder:
        tempfile.tempdir = folder
        os.chdir(folder)
    _release_stdin()


def _release_stdin() -> None:
    """Put /dev/null on stdin, as a cold node has, so that no process the
    node starts holds the worker's pipe."""
    devnull = os.open(os.devnull, os.O_RDONLY)
    try:
        os.dup2(devnull, 0)
    finally:
        os.close(devnull)


def report_started() -> None:
    """Close the pipe the worker waits on: the session's start is over."""
    descriptor = os.environ.pop(STARTED_FD_ENV, "")
    if descriptor.isdigit():
        with contextlib.suppress(OSError):
            os.close(int(descriptor))
