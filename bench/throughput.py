"""Command throughput: several sessions of one end driven at once.

Each session gets a thread of its own that sends `driver.title` a fixed
number of times, each as soon as the previous answer is in. The threads
start together (a barrier); the rate is every command of every thread over
the time from the first thread's start to the last one's end.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

from selenium.webdriver.remote.webdriver import WebDriver


class Lane:
    """One thread's share: `count` commands on one session."""

    def __init__(self, driver: WebDriver, count: int) -> None:
        self.driver = driver
        self.count = count
        self.began = self.ended = 0.0
        self.error: BaseException | None = None

    def run(self, start: threading.Barrier, stop: threading.Event) -> None:
        try:
            start.wait()
            self.began = time.perf_counter()
            for _ in range(self.count):
                if stop.is_set():
                    return
                _ = self.driver.title
            self.ended = time.perf_counter()
        except Exception as exc:  # handed to the caller, in the main thread
            self.error = exc


def rate(drivers: Sequence[WebDriver], count: int) -> float:
    """Commands per second with each of `drivers` sending `count` at once."""
    lanes = [Lane(driver, count) for driver in drivers]
    start = threading.Barrier(len(lanes))
    stop = threading.Event()
    threads = [
        threading.Thread(target=lane.run, args=(start, stop), daemon=True)
        for lane in lanes
    ]
    for thread in threads:
        thread.start()
    try:
        for thread in threads:
            thread.join()
    finally:
        # On Ctrl-C the threads end after their command in flight.
        stop.set()
    return _rate(lanes)


def _rate(lanes: list[Lane]) -> float:
    for lane in lanes:
        if lane.error is not None:
            raise lane.error
    began = min(lane.began for lane in lanes)
    ended = max(lane.ended for lane in lanes)
    return sum(lane.count for lane in lanes) / (ended - began)
