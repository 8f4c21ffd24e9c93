"""Session-id rewriting between the grid's id and the driver's.

Clients know only the grid's id. The node swaps it for the driver's id in
request paths, and swaps the driver's id back in answers (it shows up in
new-session answers and in URLs such as `webSocketUrl`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator

SESSION_PATH = "/session/"


def split_path(path: str) -> tuple[str, str] | None:
    """(session id, rest) of a `/session/<id>[/rest]` path, else None."""
    if not path.startswith(SESSION_PATH):
        return None
    session_id, slash, rest = path[len(SESSION_PATH) :].partition("/")
    if not session_id:
        return None
    return session_id, slash + rest


def to_driver(path: str, grid_id: str, driver_id: str) -> str | None:
    """`path` addressed to the driver's session, or None if not ours."""
    parts = split_path(path)
    if parts is None or parts[0] != grid_id:
        return None
    return SESSION_PATH + driver_id + parts[1]


def to_client(body: bytes, driver_id: str, grid_id: str) -> bytes:
    """`body` with every mention of the driver's id replaced by the grid's."""
    if not driver_id:
        return body
    return body.replace(driver_id.encode(), grid_id.encode())


# Capabilities whose value is a WebSocket URL a client connects to.
WEBSOCKET_CAPS = ("webSocketUrl", "se:cdp")


def to_public(body: bytes, base: str) -> bytes:
    """A new-session answer whose WebSocket URLs point at `base` (for example
    ws://grid.example:4444) instead of the node that serves the session."""
    try:
        answer = json.loads(body)
        caps = answer["value"]["capabilities"]
    except (ValueError, KeyError, TypeError):
        return body
    changed = False
    for name in WEBSOCKET_CAPS:
        url = caps.get(name)
        if isinstance(url, str) and "://" in url:
            path = url.split("://", 1)[1].partition("/")[2]
            caps[name] = f"{base}/{path}"
            changed = True
    return json.dumps(answer).encode() if changed else body


def to_client_stream(
    chunks: Iterable[bytes], driver_id: str, grid_id: str
) -> Iterator[bytes]:
    """`to_client` over a body that arrives in chunks: a mention split
    between two chunks is replaced too."""
    old, new = driver_id.encode(), grid_id.encode()
    if not old:
        yield from chunks
        return
    tail = b""
    for chunk in chunks:
        data = tail + chunk
        out, end = _replaced(data, old, new)
        # What follows the last mention is sent but for its last bytes,
        # which may begin a mention that the next chunk completes.
        cut = max(end, len(data) - len(old) + 1)
        out.append(data[end:cut])
        tail = data[cut:]
        if joined := b"".join(out):
            yield joined
    if tail:
        yield tail


def _replaced(data: bytes, old: bytes, new: bytes) -> tuple[list[bytes], int]:
    """`data` up to the end of its last mention of `old`, with each mention
    replaced (in pieces), and where that end is."""
    out, start = [], 0
    while (found := data.find(old, start)) >= 0:
        out += [data[start:found], new]
        start = found + len(old)
    return out, start
