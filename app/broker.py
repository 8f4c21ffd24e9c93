"""The workers' Celery transport: kombu's Redis one, woken when a slot frees.

While every slot of a worker is busy, kombu reads no task from Redis. Its
poller learns that a slot has freed only when its current wait ends (up to
a second or two), since a wait watches the sockets it was given when it
began. This transport's poller also watches a pipe of its own, and its QoS
writes to that pipe once a task is acknowledged (a slot freed): the wait
ends there, and the next request is claimed at once. celeryconfig names it
as `broker_transport`; kombu is pinned, since this leans on how its poller
works.
"""

from __future__ import annotations

import contextlib
import os
import weakref
from typing import Any

from kombu.transport import redis
from kombu.utils.eventio import READ


class Poller(redis.MultiChannelPoller):  # type: ignore[misc]
    """kombu's poller; a byte written by `wake()` ends its current wait.

    NOTE: kombu sleeps instead of waiting, deaf to wakes, in one case: when
    it has no socket to watch but a read paused for want of credit. A
    worker always has one, its remote control's.
    """

    def __init__(self) -> None:
        super().__init__()
        self.wake_fd, self._wake_write = os.pipe()
        for fd in (self.wake_fd, self._wake_write):
            os.set_blocking(fd, False)
        weakref.finalize(self, _close_all, self.wake_fd, self._wake_write)
        self.poller.register(self.wake_fd, READ)

    def wake(self) -> None:
        with contextlib.suppress(BlockingIOError):
            os.write(self._wake_write, b"\0")

    def get(self, callback: Any, timeout: float | None = None) -> Any:
        try:
            return super().get(callback, timeout)
        finally:
            self._drain_wakes()

    def _drain_wakes(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while os.read(self.wake_fd, 512):
                pass


class QoS(redis.QoS):  # type: ignore[misc]
    """kombu's, waking the poller whenever a message is settled."""

    def ack(self, delivery_tag: str) -> None:
        super().ack(delivery_tag)
        self.channel.connection.cycle.wake()

    def reject(self, delivery_tag: str, requeue: bool = False) -> None:
        super().reject(delivery_tag, requeue=requeue)
        self.channel.connection.cycle.wake()


class Channel(redis.Channel):  # type: ignore[misc]
    QoS = QoS


class Transport(redis.Transport):  # type: ignore[misc]
    Channel = Channel

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.cycle = Poller()  # type: ignore[assignment]


def _close_all(*fds: int) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)
