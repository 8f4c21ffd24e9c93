"""app.broker: kombu's Redis transport, whose poller waits briefly while a
consumer has no credit left (every slot of its worker busy)."""

from __future__ import annotations

import contextlib
import queue
from collections.abc import Iterator

import kombu
import pytest

from app import embedded_redis
from app.broker import RESUME_INTERVAL, Poller, Transport


@pytest.fixture
def connection() -> Iterator[kombu.Connection]:
    with (
        embedded_redis.serve() as url,
        kombu.Connection(url, transport=Transport) as conn,
    ):
        yield conn


def test_the_celery_app_uses_it() -> None:
    from app.orchestrator import celery

    with celery.connection_for_read() as conn:
        assert isinstance(conn.transport, Transport)
        assert isinstance(conn.transport.cycle, Poller)


def test_a_consumer_without_credit_makes_waits_short(
    connection: kombu.Connection,
) -> None:
    queue = kombu.Queue("webgrid.test")
    received: list[kombu.Message] = []
    with connection.Consumer(queue, callbacks=[lambda _, m: received.append(m)]) as c:
        c.qos(prefetch_count=1)
        poller = connection.transport.cycle
        assert not poller.all_busy()
        with connection.Producer() as producer:
            producer.publish({"n": 1}, routing_key=queue.name, declare=[queue])
        connection.drain_events(timeout=5)
        assert len(received) == 1
        # One unacknowledged message holds the one slot: no credit.
        assert poller.all_busy()
        waited = _timeout_of_next_wait(poller)
        assert waited is not None and waited <= RESUME_INTERVAL
        received[0].ack()
        assert not poller.all_busy()

        # Busy again, then cancelled, as on a worker's shutdown: it consumes
        # nothing, and kombu's own waits are back.
        with connection.Producer() as producer:
            producer.publish({"n": 2}, routing_key=queue.name, declare=[queue])
        connection.drain_events(timeout=5)
        assert poller.all_busy()
        c.cancel()
        assert not poller.all_busy()
        received[1].ack()


def _timeout_of_next_wait(poller: Poller) -> float | None:
    """The timeout kombu's poller gets for its next wait."""
    seen: list[float | None] = []
    inner = poller.poller.poll

    def recording(timeout: float | None = None) -> list[object]:
        seen.append(timeout)
        return list(inner(0))

    poller.poller.poll = recording
    try:
        # Nothing comes: kombu says so with queue.Empty.
        with contextlib.suppress(queue.Empty):
            poller.get(lambda *_: None, timeout=2.0)
    finally:
        poller.poller.poll = inner
    return seen[0] if seen else None
