"""Serve any of the grid's roles: `python -m app.web proxy|manager|worker ...`.

Given several roles (`python -m app.web proxy manager worker`, as the
all-in-one grid runs them), one process serves them all on one gevent hub:
they share the interpreter, gevent and the Redis client library, so the set
costs less memory than a process each. The worker role is a Celery worker on
gevent's pool, the same worker `celery -A app worker` starts; started here,
the process does not load Celery's command line, about 9 MiB.
"""

from gevent import monkey

monkey.patch_all()

import logging  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
import uuid  # noqa: E402
from collections.abc import Callable  # noqa: E402

import gevent  # noqa: E402
import gevent.event  # noqa: E402
from gevent.pywsgi import WSGIServer  # noqa: E402

from app import logs, registry, settings  # noqa: E402
from app.errors import SettingsError  # noqa: E402
from app.http.wsgi import ClientSocketHandler  # noqa: E402
from app.patching import require_patched  # noqa: E402

log = logging.getLogger("app.web")

USAGE = "usage: python -m app.web proxy|manager|worker [proxy|manager|worker ...]"


Stop = Callable[[], None]


def start_proxy(config: settings.Settings) -> Stop:
    from app.http.server import Server
    from app.web.proxy import Proxy, RouteTable

    client = registry.connect(config.redis_url)
    routes = RouteTable(client, config)
    routes.start()
    server = Server((config.proxy_bind, config.proxy_port), Proxy(config, routes))
    server.start()
    log.info("proxy serving on http://%s:%d", config.proxy_bind, server.server_port)
    return lambda: server.stop(timeout=5)


def start_manager(config: settings.Settings) -> Stop:
    from app.orchestrator import celery
    from app.web.manager import create_app

    client = registry.connect(config.redis_url)
    server = WSGIServer(
        (config.host, config.manager_port),
        create_app(config, client, celery),
        log=None,
        error_log=log,
        handler_class=ClientSocketHandler,
    )
    server.start()
    address = f"{config.host}:{server.server_port}"
    heartbeat = registry.Heartbeat(
        client,
        registry.manager_key(uuid.uuid4().hex[:12]),
        lambda: address,
        interval=config.heartbeat_interval,
        ttl=config.heartbeat_ttl,
    )
    heartbeat.start()
    log.info("manager serving on http://%s", address)

    def stop() -> None:
        heartbeat.stop()
        server.stop(timeout=5)

    return stop


def run_worker(config: settings.Settings) -> int:
    """Run a Celery worker in this process until it shuts down, as
    `celery -A app worker` does (SIGTERM drains its sessions; SIGINT and
    SIGQUIT stop them at once); return its exit code."""
    from app.orchestrator import celery

    worker = celery.Worker(pool_cls="gevent", loglevel=config.log_level)
    worker.start()
    return int(worker.exitcode or 0)


# The servers, in the order they stop: the proxy first, so that no request
# comes in.
SERVERS: dict[str, Callable[[settings.Settings], Stop]] = {
    "proxy": start_proxy,
    "manager": start_manager,
}
ROLES = (*SERVERS, "worker")


def _wait_for_signal() -> int:
    stop = gevent.event.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        gevent.signal_handler(signum, stop.set)
    stop.wait()
    return 0


def main(argv: list[str]) -> int:
    if not argv or len(set(argv)) != len(argv) or not set(argv) <= set(ROLES):
        print(USAGE, file=sys.stderr)
        return 2
    roles = [role for role in ROLES if role in argv]
    name = " and ".join(filter(None, (", ".join(roles[:-1]), roles[-1])))
    require_patched(name)
    try:
        config = settings.get()
    except SettingsError as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return 2
    logs.setup(config.log_level)
    return serve(roles, config)


def serve(roles: list[str], config: settings.Settings) -> int:
    """Serve `roles` (in the order of ROLES) until told to stop; the exit code.

    The manager starts first, so that the proxy has one to send to at once.
    The worker comes last, in the foreground; while it drains its sessions
    on the way out, the proxy still serves them.
    """
    servers = [role for role in roles if role in SERVERS]
    stops = {role: SERVERS[role](config) for role in reversed(servers)}
    code = run_worker(config) if "worker" in roles else _wait_for_signal()
    for role in servers:
        stops[role]()
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
