"""bench.spares: its table, and the grids it sets side by side."""

from __future__ import annotations

from bench import ends, spares


def test_the_table_shows_each_grid_and_its_spare() -> None:
    results = {
        "results": {
            "spare": {"median": 570.4, "p95": 639.0},
            "cold": {"median": 787.2, "p95": 837.9},
        },
        "spare node rss MiB": {"spare": 36.6, "cold": None},
    }
    lines = spares.render(results).splitlines()
    assert lines[1].split() == ["spare", "570", "ms", "639", "ms", "37", "MiB"]
    assert lines[2].split() == ["cold", "787", "ms", "838", "ms", "none"]


def test_the_grids_differ_only_in_their_spare_nodes() -> None:
    spare, cold = spares.make_ends(4)
    assert (spare.name, cold.name) == ("spare", "cold")
    assert spare.counted == (ends.GRID_PROCESS, "spare node")
    assert cold.counted == (ends.GRID_PROCESS,)
    differ = {
        key
        for key in set(spare.env) | set(cold.env)
        if spare.env.get(key) != cold.env.get(key)
    }
    assert differ == {"WEBGRID_SPARE_NODES", "WEBGRID_PROXY_PORT"}
