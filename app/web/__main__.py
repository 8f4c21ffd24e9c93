"""Serve the proxy or a manager: `python -m app.web proxy|manager`."""

from gevent import monkey

monkey.patch_all()

import logging  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
import uuid  # noqa: E402

import gevent  # noqa: E402
import gevent.event  # noqa: E402
from gevent.pywsgi import WSGIServer  # noqa: E402

from app import logs, registry, settings  # noqa: E402
from app.errors import SettingsError  # noqa: E402
from app.http.wsgi import ClientSocketHandler  # noqa: E402
from app.patching import require_patched  # noqa: E402

log = logging.getLogger("app.web")

USAGE = "usage: python -m app.web proxy|manager"


def serve_proxy(config: settings.Settings) -> None:
    from app.http.server import Server
    from app.web.proxy import Proxy, RouteTable

    client = registry.connect(config.redis_url)
    routes = RouteTable(client, config)
    routes.start()
    server = Server((config.proxy_bind, config.proxy_port), Proxy(config, routes))
    server.start()
    log.info("proxy serving on http://%s:%d", config.proxy_bind, server.server_port)
    _wait_for_signal()
    server.stop(timeout=5)


def serve_manager(config: settings.Settings) -> None:
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
    _wait_for_signal()
    heartbeat.stop()
    server.stop(timeout=5)


def _wait_for_signal() -> None:
    stop = gevent.event.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        gevent.signal_handler(signum, stop.set)
    stop.wait()


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0] not in ("proxy", "manager"):
        print(USAGE, file=sys.stderr)
        return 2
    require_patched(argv[0])
    try:
        config = settings.get()
    except SettingsError as exc:
        print(f"{argv[0]}: {exc}", file=sys.stderr)
        return 2
    logs.setup(config.log_level)
    if argv[0] == "proxy":
        serve_proxy(config)
    else:
        serve_manager(config)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
