"""HTTP for the grid's hot path, on gevent.

- `messages`: heads, streaming bodies, requests and answers;
- `server`: the server the proxy and the nodes answer commands with;
- `client`: kept-alive connections to nodes, drivers and managers;
- `tunnel`: WebSocket tunnels (BiDi, Chrome DevTools);
- `wsgi`: what the manager's WSGI server needs.
"""
