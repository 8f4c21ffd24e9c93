"""More requests than slots: the queue under a burst, and fair slots.

The burst sends 40 new-session requests at once to four slots (two workers
of two). Each must end in a working session or a W3C error, none may be
lost or answered twice, no more sessions may run than there are slots, and
afterwards no process and no busy slot is left. The fairness test shows that
a worker never holds a request it cannot start while another has a free
slot, and that a queued request starts as soon as a slot frees.
"""

from __future__ import annotations

import concurrent.futures
import math
import threading
import time
from collections.abc import Callable, Iterable, Sequence

import psutil
import requests
from celery import Celery

from app import registry
from bench.burst import (
    Answer,
    Sampler,
    fire,
    session_records,
    slots_used,
    stamp,
    still_running,
    worker_descendants,
)
from tests.harness import Grid, wait_for
from tests.integration.test_w3c_errors import ANY_CHROME, new_session

BURST = 40
# How soon after a DELETE the queued request must start on the freed slot;
# its queue timeout (300 s by default) is a hundred times longer.
START_AFTER_DELETE = 3.0
W3C_ERROR_KEYS = {"error", "message", "stacktrace"}


def wait_for_slots(grid: Grid, total: int) -> None:
    """Wait until every worker has joined, so none misses the first requests."""
    wait_for(lambda: grid.status()["slots"]["total"] == total, 30, f"{total} slots")


def wait_all_terminated(grid: Grid) -> dict[str, dict[str, str]]:
    def all_ended() -> dict[str, dict[str, str]] | None:
        records = session_records(grid.client)
        ended = all(r.get("state") == "terminated" for r in records.values())
        return records if ended else None

    return wait_for(all_ended, 20, "every session record terminated")


def most_at_once(intervals: Iterable[tuple[float, float]]) -> int:
    """The largest number of (start, end) intervals open at one moment."""
    # An end sorts before a start at the same instant: a slot handed on.
    events = sorted(
        [(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals]
    )
    open_now = most = 0
    for _, step in events:
        open_now += step
        most = max(most, open_now)
    return most


def slot_holds(records: Iterable[dict[str, str]]) -> list[tuple[float, float]]:
    """From a worker's claim of each session to its end."""
    return [
        (stamp(r, "provisioning"), stamp(r, "terminated"))
        for r in records
        if "provisioning_at" in r
    ]


def assert_w3c_answer(answer: Answer) -> None:
    """A session that answered two commands, or a W3C error body."""
    assert not answer.failure, f"request {answer.index} got no answer"
    if answer.session_id:
        assert (answer.title_status, answer.delete_status) == (200, 200), answer
        return
    assert answer.status is not None and answer.status >= 400, answer
    assert isinstance(answer.value, dict) and set(answer.value) >= W3C_ERROR_KEYS
    assert answer.value["error"] and answer.value["message"], answer


def test_burst_of_40_against_4_slots(make_grid: Callable[..., Grid]) -> None:
    grid = make_grid(workers=2, WEBGRID_SLOTS="2")
    wait_for_slots(grid, 4)
    with (
        Sampler(lambda: slots_used(grid.url)) as used,
        Sampler(lambda: worker_descendants(grid), every=0.5) as below_workers,
    ):
        answers = fire(grid.url, BURST)

    # Every request was answered once: a working session or a W3C error.
    assert len(answers) == BURST
    for answer in answers:
        assert_w3c_answer(answer)
    errors = [answer.error for answer in answers if answer.error]
    print(f"\nburst: {BURST - len(errors)} sessions, {len(errors)} errors: {errors}")
    session_ids = [a.session_id for a in answers if a.session_id]
    assert len(set(session_ids)) == len(session_ids), "a session id was reused"

    # Each session has a record that ended as its client asked; no record
    # was left behind by a request nobody heard back from.
    records = wait_all_terminated(grid)
    assert len(records) <= BURST
    assert registry.live_sessions(grid.client) == []
    for session_id in session_ids:
        assert records[str(session_id)]["reason"] == "deleted by the client"

    # Never more sessions than slots: on the grid, and on each worker.
    assert used.samples and not used.failures, used.failures
    assert max(used.samples) <= 4, used.samples
    assert most_at_once(slot_holds(records.values())) <= 4
    workers = {record["worker"] for record in records.values()}
    for worker in workers:
        mine = [r for r in records.values() if r["worker"] == worker]
        assert most_at_once(slot_holds(mine)) <= 2, worker
    served = {records[str(session_id)]["worker"] for session_id in session_ids}
    assert len(served) == 2, f"only {served} served sessions"

    # Nothing left: no busy slot, no session process, nothing below a worker
    # but the spare node each keeps for its next session.
    grid.wait_slots_free()
    assert grid.processes() == []
    seen = {p for sample in below_workers.samples for p in sample}
    assert seen, "no node process was ever seen below the workers"
    wait_for(lambda: not left_below(grid, seen), 10, "every node process gone")


def left_below(grid: Grid, seen: Iterable[psutil.Process]) -> list[psutil.Process]:
    """Those of `seen` still running, but for spares awaiting a session."""
    spares = {
        spare.pid
        for worker in ("w0", "w1")
        for spare in grid.spares(f"worker-{worker}")
    }
    return [process for process in still_running(seen) if process.pid not in spares]


def first_done(
    futures: Sequence[concurrent.futures.Future[requests.Response]], count: int
) -> list[int]:
    """Indexes of the first `count` of `futures` to finish, in order."""
    done: list[int] = []
    for future in concurrent.futures.as_completed(futures, timeout=90):
        done.append(futures.index(future))
        if len(done) == count:
            break
    return done


def session_of(answer: requests.Response) -> str:
    assert answer.status_code == 200, answer.text
    return str(answer.json()["value"]["sessionId"])


def started_side_by_side(first: dict[str, str], second: dict[str, str]) -> bool:
    """Each start began before the other one had finished."""
    return stamp(first, "provisioning") < stamp(second, "running") and stamp(
        second, "provisioning"
    ) < stamp(first, "running")


def stays_queued(grid: Grid, session_id: str, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if grid.record(session_id)["state"] != "queued":
            return False
        time.sleep(0.1)
    return True


def test_fair_slots_across_two_workers(make_grid: Callable[..., Grid]) -> None:
    grid = make_grid(workers=2, WEBGRID_SLOTS="1")
    wait_for_slots(grid, 2)
    start_line = threading.Barrier(3)

    def request() -> requests.Response:
        start_line.wait()
        return new_session(grid, ANY_CHROME)

    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        futures = [pool.submit(request) for _ in range(3)]
        try:
            check_fair_start(grid, futures)
        finally:
            delete_sessions(grid, futures)
    grid.wait_slots_free()
    assert grid.processes() == []


def claimed(grid: Grid, session_id: str, within: float) -> dict[str, str]:
    """The record of `session_id` once a worker has claimed it; {} if no
    worker did within `within` seconds."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        record = grid.record(session_id)
        if "provisioning_at" in record:
            return record
        time.sleep(0.05)
    return {}


def holder_of(grid: Grid, session_id: str) -> str | None:
    """The worker that has taken the request of `session_id` off the queue
    without starting it, if one has."""
    with Celery("webgrid-test", broker=grid.redis_url) as tasks:
        reserved = tasks.control.inspect(timeout=1).reserved() or {}
    for worker, held in reserved.items():
        if any(task["args"][0] == session_id for task in held):
            return str(worker)
    return None


def delete_sessions(
    grid: Grid, futures: Sequence[concurrent.futures.Future[requests.Response]]
) -> None:
    """Delete the session of each request as it is answered, so that one
    still queued behind the others gets its slot and is deleted too."""
    pending = set(futures)
    while pending:
        done, pending = concurrent.futures.wait(
            pending, timeout=90, return_when=concurrent.futures.FIRST_COMPLETED
        )
        if not done:
            return
        for future in done:
            if future.exception() is None and future.result().status_code == 200:
                url = f"{grid.url}/session/{session_of(future.result())}"
                requests.delete(url, timeout=30)


def check_fair_start(
    grid: Grid, futures: Sequence[concurrent.futures.Future[requests.Response]]
) -> None:
    # Two start together, one on each worker.
    first, second = first_done(futures, 2)
    ids = [session_of(futures[first].result()), session_of(futures[second].result())]
    records = [grid.record(session_id) for session_id in ids]
    assert records[0]["worker"] != records[1]["worker"], records
    assert started_side_by_side(*records), records

    # The third waits in the queue while both slots are held ...
    (queued,) = set(session_records(grid.client)) - set(ids)
    start = max(stamp(r, "running") - stamp(r, "provisioning") for r in records)
    assert stays_queued(grid, queued, max(start, 2.0))
    (third,) = set(range(3)) - {first, second}
    assert not futures[third].done()

    # ... and starts on the freed slot as soon as one of them is deleted. A
    # worker that took the request while busy would keep it: free the other.
    holder = holder_of(grid, queued)
    freed = 1 if records[0]["worker"] == holder else 0
    deleted_at = time.time()
    gone = requests.delete(f"{grid.url}/session/{ids[freed]}", timeout=30)
    assert gone.status_code == 200
    record = claimed(grid, queued, within=10)
    waited = stamp(record, "provisioning") - deleted_at if record else math.inf
    print(f"\nfair: starts took up to {start:.2f} s; third began {waited:.2f} s")
    assert 0 < waited < START_AFTER_DELETE, (
        f"{records[freed]['worker']} freed its slot, but the waiting request "
        f"started {waited:.2f} s later (reserved by worker {holder})"
    )
    assert record["worker"] == records[freed]["worker"]
    assert session_of(futures[third].result(timeout=60)) == queued
