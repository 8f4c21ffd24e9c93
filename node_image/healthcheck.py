"""The node container's health check (Dockerfile HEALTHCHECK).

Healthy when the session's route is alive in Redis and the node accepts a
connection at that address. It sends no request: a request would count as
client activity and hold off the session's idle timeout.
"""

from __future__ import annotations

import os
import socket
import sys

import redis

from app import registry
from app.node.config import NODE_SESSION_ENV


def check() -> str:
    """An empty string when healthy, else what is wrong."""
    session_id = os.environ.get(NODE_SESSION_ENV, "")
    client = registry.connect(os.environ.get("REDIS_URL", ""))
    try:
        address = registry.route(client, session_id)
    except redis.RedisError as exc:
        return f"Redis does not answer: {exc}"
    finally:
        client.close()
    if not address:
        return f"session {session_id} has no live route in Redis"
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=2).close()
    except OSError as exc:
        return f"the node does not accept connections at {address}: {exc}"
    return ""


if __name__ == "__main__":
    problem = check()
    if problem:
        print(problem)
    sys.exit(1 if problem else 0)
