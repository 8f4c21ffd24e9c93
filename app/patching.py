"""Checks that gevent's monkey-patching really happened before anything else.

A component that serves through gevent must patch before any other import;
one that forgot would block its whole server on the first slow socket.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def require_patched(component: str) -> None:
    """Exit with a plain message if the standard library is not patched."""
    from gevent import monkey

    missing = [
        name
        for name in ("socket", "ssl", "threading", "time", "select")
        if not monkey.is_module_patched(name)
    ]
    if missing:
        sys.exit(
            f"{component}: gevent did not patch {', '.join(missing)}; "
            "call gevent.monkey.patch_all() before importing anything else"
        )


def in_os_thread(func: Callable[..., T], *args: Any) -> T:
    """`func(*args)`, run in a thread of the system if gevent has patched
    this process, so that its loop serves on meanwhile; else run here.

    For work that is slow and never waits on a socket, such as a scan of
    every process on the host: in a greenlet it would hold up the proxy
    and the worker of a process that serves both. `func` must not log or
    touch gevent's objects; its caller does that with what it returns.
    """
    from gevent import monkey

    if not monkey.is_module_patched("threading"):
        return func(*args)
    import gevent

    return gevent.get_hub().threadpool.apply(func, args)  # type: ignore[no-any-return]


def in_background(work: Callable[[], None]) -> None:
    """Start `work` in a thread of its own, for a signal handler must not
    wait; or in a greenlet, where the handler runs in gevent's loop (as in a
    worker on gevent's pool), where even starting a thread waits."""
    gevent = sys.modules.get("gevent")
    if gevent is not None and gevent.getcurrent() is gevent.get_hub():
        gevent.spawn(work)
    else:
        threading.Thread(target=work, name="in background").start()
