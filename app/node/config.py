"""What a node is told by its provisioner, through environment variables."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from typing import Any

from app import settings
from app.errors import SettingsError

NODE_SESSION_ENV = "WEBGRID_NODE_SESSION"


@dataclasses.dataclass(frozen=True, kw_only=True)
class NodeConfig:
    session_id: str
    browser: str
    capabilities: dict[str, Any]
    worker: str
    parent_pid: int
    grid: settings.Settings


def from_environ(environ: Mapping[str, str] = os.environ) -> NodeConfig:
    """Read the node's orders; raise `SettingsError` naming what is missing."""
    missing = [
        name
        for name in (NODE_SESSION_ENV, "WEBGRID_NODE_BROWSER")
        if not environ.get(name)
    ]
    if missing:
        raise SettingsError(
            f"a node needs {', '.join(missing)}; nodes are started by a worker"
        )
    try:
        capabilities = json.loads(environ.get("WEBGRID_NODE_CAPABILITIES", "{}"))
    except ValueError as exc:
        raise SettingsError(f"WEBGRID_NODE_CAPABILITIES is not JSON: {exc}") from None
    return NodeConfig(
        session_id=environ[NODE_SESSION_ENV],
        browser=environ["WEBGRID_NODE_BROWSER"],
        capabilities=capabilities,
        worker=environ.get("WEBGRID_NODE_WORKER", ""),
        parent_pid=int(environ.get("WEBGRID_NODE_PARENT", "0") or 0),
        grid=settings.from_environ(environ),
    )
