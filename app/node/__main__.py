"""Entry point of a node process, started by a provisioner.

`python -m app.node` reads its orders from the environment; with `--spare`
it waits for them on stdin first (see `app.node.spare`).
"""

from gevent import monkey

monkey.patch_all()

import logging  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402

from app import logs  # noqa: E402
from app.errors import SettingsError  # noqa: E402
from app.node import config, spare  # noqa: E402
from app.node.agent import NodeAgent  # noqa: E402
from app.patching import require_patched  # noqa: E402


def main() -> int:
    require_patched("node")
    try:
        if spare.SPARE_FLAG in sys.argv[1:]:
            orders = spare.await_orders(sys.stdin.buffer)
            if orders is None:
                return 0
            spare.apply_orders(orders)
        node_config = config.from_environ()
    except SettingsError as exc:
        print(f"node: {exc}", file=sys.stderr)
        return 2
    logs.setup(node_config.grid.log_level)
    return NodeAgent(node_config).run()


if __name__ == "__main__":
    code = main()
    # The provisioner removes this folder too; the node does it as well in
    # case its worker is gone and nobody else will.
    owned = os.environ.get("WEBGRID_NODE_TMPDIR")
    if owned:
        shutil.rmtree(owned, ignore_errors=True)
    logging.shutdown()
    # NOTE: the node has stopped everything it started; skipping the
    # interpreter's teardown frees its slot sooner.
    os._exit(code)
