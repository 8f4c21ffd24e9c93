"""How nodes start: one module per way (local processes, Docker containers).

Every provisioner has `start(session_id, browser, capabilities, worker)`,
which returns a `Node`, and `close()`, which its worker calls last when it
stops; WEBGRID_PROVISIONER picks one per worker.
"""

from __future__ import annotations

from typing import Any, Protocol

from app import settings


class Node(Protocol):
    """A started node, as the task that supervises it sees it."""

    session_id: str

    def wait(self, timeout: float) -> int | None: ...

    def stop(self) -> None: ...


class Provisioner(Protocol):
    def start(
        self,
        session_id: str,
        browser: str,
        capabilities: dict[str, Any],
        worker: str,
    ) -> Node: ...

    def close(self) -> None: ...


def make(config: settings.Settings) -> Provisioner:
    """The provisioner WEBGRID_PROVISIONER names."""
    if config.provisioner == "docker":
        from app.provisioners.docker import DockerProvisioner

        return DockerProvisioner(config)
    from app.provisioners.local import LocalProvisioner

    return LocalProvisioner(config)
