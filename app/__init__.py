"""webgrid: a Selenium grid on Celery and Redis.

`celery -A app worker` finds the Celery app here as `app.celery`. It is
loaded on first use, so the proxy, which never sends a task, does not pay
for Celery.
"""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    if name == "celery":
        from app.orchestrator import celery

        return celery
    raise AttributeError(f"module 'app' has no attribute {name!r}")
