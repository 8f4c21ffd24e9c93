"""bench.instructions: reading callgrind's count out of its dump."""

from __future__ import annotations

import pytest

from bench.instructions import totals_of

DUMP = """# callgrind format
version: 1
creator: callgrind-3.19.0
events: Ir
summary: 586000000

fn=(1) main
1 12
totals: 585941917
"""


def test_the_totals_line_gives_the_count() -> None:
    assert totals_of(DUMP) == 585_941_917


def test_a_dump_without_totals_is_an_error() -> None:
    with pytest.raises(ValueError, match="no totals line"):
        totals_of("events: Ir\nsummary: 5\n")
