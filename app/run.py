"""The all-in-one grid (`python -m app.run`, what `make run` starts).

One process: it starts Redis as its child (embedded, unless REDIS_URL is
set), serves the proxy, a manager and a worker itself, as `python -m app.web
proxy manager worker` does, and logs one line once the grid is ready.
SIGTERM, SIGINT (Ctrl-C) and SIGQUIT stop its sessions at once, then the
rest. Should its Redis die, it stops its nodes and exits with 1; should it
be killed outright, its Redis dies with it and each node ends itself.
"""

from gevent import monkey

monkey.patch_all()

import contextlib  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import gevent  # noqa: E402

from app import embedded_redis, logs, orchestrator, probes, settings  # noqa: E402
from app.errors import GridError  # noqa: E402
from app.patching import require_patched  # noqa: E402
from app.web.__main__ import ROLES, serve  # noqa: E402

log = logging.getLogger(__name__)

# The all-in-one grid stops its sessions at once when it stops; a worker of
# its own would give them WEBGRID_DRAIN_TIMEOUT to end.
OWN_SETTINGS = {"WEBGRID_DRAIN_TIMEOUT": "0"}


def main() -> int:
    require_patched("webgrid")
    os.environ.update(OWN_SETTINGS)
    try:
        # Checked before anything starts; settings.get() reads them again
        # once REDIS_URL names the embedded Redis.
        log_level = settings.from_environ(os.environ).log_level
    except GridError as exc:
        print(f"webgrid: {exc}", file=sys.stderr)
        return 2
    logs.setup(log_level)
    failures: list[str] = []
    with contextlib.ExitStack() as stack:
        if not os.environ.get("REDIS_URL"):
            try:
                redis = stack.enter_context(embedded_redis.run())
            except GridError as exc:
                log.error("%s", exc)
                return 1
            os.environ["REDIS_URL"] = redis.url
            watch = gevent.spawn(_stop_when_it_exits, redis.process)
            stack.callback(watch.kill)
        config = settings.get()
        gevent.spawn(_announce_when_ready, config, failures)
        code = serve(list(ROLES), config)
    log.info("grid stopped")
    return 1 if failures else code


def _announce_when_ready(config: settings.Settings, failures: list[str]) -> None:
    """Log the line that says the grid is ready; stop it if it never is."""
    port, timeout = config.proxy_port, config.ready_timeout
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probes.proxy_status(port)
        if value.get("ready"):
            log.info(
                "grid ready at http://localhost:%d (%s); Ctrl-C stops it",
                port,
                value.get("message", ""),
            )
            return
        gevent.sleep(0.2)
    last = probes.proxy_status(port).get("message", "no answer from the proxy")
    _fail(
        failures,
        f"the grid was not ready within {timeout:g} s (WEBGRID_READY_TIMEOUT): {last}",
    )


def _stop_when_it_exits(redis: subprocess.Popen[bytes]) -> None:
    """Should the embedded Redis die, stop every node and exit with 1."""
    code = redis.wait()
    why = f"the embedded Redis exited with code {code}"
    log.error("%s; stopping the grid", why)
    # NOTE: Celery's worker would try to reach its broker again for ever
    # rather than stop; this stops what it started, and ends the process.
    with contextlib.suppress(RuntimeError):
        worker = orchestrator.current()
        worker.stop_now(why)
        worker.provisioner.close()
    logging.shutdown()
    os._exit(1)


def _fail(failures: list[str], why: str) -> None:
    """Stop the grid as SIGTERM would, and have it exit with 1."""
    failures.append(why)
    log.error("%s; stopping the grid", why)
    os.kill(os.getpid(), signal.SIGTERM)


if __name__ == "__main__":
    sys.exit(main())
