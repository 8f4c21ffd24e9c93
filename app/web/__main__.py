"""Serve the proxy, a manager or both: `python -m app.web proxy|manager ...`.

Given both roles (`python -m app.web proxy manager`, as the all-in-one grid
runs them), one process serves the two on one gevent hub: they share the
interpreter, gevent and the Redis client library, so the pair costs less
memory than two processes.
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

USAGE = "usage: python -m app.web proxy|manager [proxy|manager]"


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


# In the order they stop: the proxy first, so that no request comes in.
ROLES: dict[str, Callable[[settings.Settings], Stop]] = {
    "proxy": start_proxy,
    "manager": start_manager,
}


def _wait_for_signal() -> None:
    stop = gevent.event.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        gevent.signal_handler(signum, stop.set)
    stop.wait()


def main(argv: list[str]) -> int:
    if not argv or len(set(argv)) != len(argv) or not set(argv) <= set(ROLES):
        print(USAGE, file=sys.stderr)
        return 2
    roles = [role for role in ROLES if role in argv]
    name = " and ".join(roles)
    require_patched(name)
    try:
        config = settings.get()
    except SettingsError as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return 2
    logs.setup(config.log_level)
    # The manager starts first, so that the proxy has one to send to at once.
    stops = {role: ROLES[role](config) for role in reversed(roles)}
    _wait_for_signal()
    for role in roles:
        stops[role]()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
