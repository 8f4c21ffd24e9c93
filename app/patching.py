"""Checks that gevent's monkey-patching really happened before anything else.

A component that serves through gevent must patch before any other import;
one that forgot would block its whole server on the first slow socket.
"""

from __future__ import annotations

import sys


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
