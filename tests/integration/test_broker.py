"""app.broker: kombu's Redis transport, whose poller is woken when a
consumer without credit (every slot of its worker busy) settles a message."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator

import kombu
import pytest

from app import embedded_redis
from app.broker import Poller, Transport

# Longer than any wait of these tests: a wait that lasts it was never woken.
LONG_WAIT = 60.0


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


@pytest.mark.parametrize("with_control", [True, False])
def test_an_ack_wakes_a_consumer_that_had_no_credit(
    connection: kombu.Connection, with_control: bool
) -> None:
    tasks = kombu.Queue("webgrid.test")
    received: list[kombu.Message] = []
    with contextlib.ExitStack() as stack:
        if with_control:
            # A Celery worker listens on a broadcast queue too (remote
            # control), on a channel of its own.
            stack.enter_context(listen_for_control(connection))
        consumer = stack.enter_context(
            connection.Consumer(tasks, callbacks=[lambda _, m: received.append(m)])
        )
        consumer.qos(prefetch_count=1)
        publish(connection, tasks, 1)
        drain_until(connection, lambda: len(received) == 1)
        publish(connection, tasks, 2)
        # One unacknowledged message holds the one slot: no credit, so kombu
        # reads nothing more until it is acknowledged, during a long wait.
        woken = record_wait_ends(connection.transport.cycle)
        acker = threading.Timer(0.5, received[0].ack)
        acker.start()
        drain_until(connection, lambda: len(received) == 2)
        acker.join()
        assert [m.payload for m in received] == [{"n": 1}, {"n": 2}]
        assert connection.transport.cycle.wake_fd in woken
        # Waits end for a reason, not over and over.
        assert len(woken) < 10, woken
        received[1].ack()


def listen_for_control(connection: kombu.Connection) -> kombu.Consumer:
    control = kombu.Queue(
        "webgrid.test.control", kombu.Exchange("webgrid.control", type="fanout")
    )
    return kombu.Consumer(connection.channel(), [control], no_ack=True)


def drain_until(connection: kombu.Connection, done: Callable[[], bool]) -> None:
    """Drain until `done()`; a drain also ends on a subscription's reply.
    Each drain may wait LONG_WAIT: one that does raises a timeout."""
    while not done():
        connection.drain_events(timeout=LONG_WAIT)


def publish(connection: kombu.Connection, queue: kombu.Queue, n: int) -> None:
    with connection.Producer() as producer:
        producer.publish({"n": n}, routing_key=queue.name, declare=[queue])


def record_wait_ends(poller: Poller) -> list[int]:
    """The file descriptors whose events end the poller's waits, from now."""
    seen: list[int] = []
    inner = poller.poller.poll

    def recording(timeout: float | None = None) -> list[tuple[int, int]]:
        events = list(inner(timeout) or [])
        seen.extend(fd for fd, _ in events)
        return events

    poller.poller.poll = recording
    return seen
