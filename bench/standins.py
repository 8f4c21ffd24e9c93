"""Stand-ins for bench.instructions: a driver that answers at once, and the
least a gevent hop can do.

    python -m bench.standins driver PORT
    python -m bench.standins relay PORT UPSTREAM_PORT

- driver: answers every request with the same small `title` answer, in a
  thread per connection, so that no browser competes for the CPU;
- relay: a gevent server that writes what a client sends to the upstream
  and what the upstream answers back, one read each way, parsing nothing.
  It holds only for small messages that arrive in one piece, which is all
  the benchmark sends: it is a floor to measure against, not a proxy.
"""

from __future__ import annotations

import socket
import sys
import threading
from typing import Any

TITLE = b'{"value":"A page title"}'
ANSWER = (
    b"HTTP/1.1 200 OK\r\n"
    b"Content-Length: %d\r\n"
    b"Content-Type: application/json; charset=utf-8\r\n"
    b"cache-control: no-cache\r\n\r\n%b" % (len(TITLE), TITLE)
)
LOOPBACK = "127.0.0.1"


def serve_driver(port: int) -> None:
    """Answer every request head on `port` with ANSWER, until killed."""
    listener = socket.create_server((LOOPBACK, port))
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=_answer_heads, args=(conn,), daemon=True).start()


def _answer_heads(conn: socket.socket) -> None:
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    pending = b""
    with conn:
        while data := conn.recv(65536):
            pending += data
            while b"\r\n\r\n" in pending:
                _, pending = pending.split(b"\r\n\r\n", 1)
                conn.sendall(ANSWER)


def serve_relay(port: int, upstream: int) -> None:
    """Relay each connection on `port` to `upstream`, until killed."""
    from gevent import socket as green
    from gevent.server import StreamServer

    def relay(client: Any, _peer: Any) -> None:
        driver = green.create_connection((LOOPBACK, upstream))
        for sock in (client, driver):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with driver:
            while data := client.recv(65536):
                driver.sendall(data)
                client.sendall(driver.recv(65536))

    StreamServer((LOOPBACK, port), relay).serve_forever()


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "driver":
        serve_driver(int(argv[1]))
    elif len(argv) == 3 and argv[0] == "relay":
        serve_relay(int(argv[1]), int(argv[2]))
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
