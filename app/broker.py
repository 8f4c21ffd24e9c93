"""The workers' Celery transport: kombu's Redis one, quick to resume.

While every slot of a worker is busy, kombu asks Redis for no task. In a
process patched by gevent (the all-in-one grid), a wait of its poller sees
only the sockets it was given when it began: a slot freed during one of its
waits (up to two seconds) made the next session wait for the end of it.
While no slot is free, this transport's waits last at most 50 ms; once one
is, they are kombu's. celeryconfig names it as `broker_transport`; kombu is
pinned, since this leans on how its poller works.
"""

from __future__ import annotations

from typing import Any

from kombu.transport import redis

# Seconds between two looks at a busy worker's slots.
RESUME_INTERVAL = 0.05


class Poller(redis.MultiChannelPoller):  # type: ignore[misc]
    def get(self, callback: Any, timeout: float | None = None) -> Any:
        if self.all_busy():
            timeout = min(timeout or RESUME_INTERVAL, RESUME_INTERVAL)
        return super().get(callback, timeout)

    def all_busy(self) -> bool:
        """Whether it consumes queues, and has no credit left for any.

        A worker shutting down consumes none: its waits stay kombu's.
        """
        consuming = [channel for channel in self._channels if channel.active_queues]
        return bool(consuming) and not any(
            channel.qos.can_consume() for channel in consuming
        )


class Transport(redis.Transport):  # type: ignore[misc]
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.cycle = Poller()  # type: ignore[assignment]
