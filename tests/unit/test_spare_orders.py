"""The orders a worker sends a spare node: one JSON line of variables."""

from __future__ import annotations

import io

import pytest

from app.errors import SettingsError
from app.node.spare import await_orders, encode_orders, parse_orders

ORDERS = {
    "WEBGRID_NODE_SESSION": "3f1c",
    "WEBGRID_NODE_CAPABILITIES": '{"webgrid:options": {"metadata": {"a": "b\\nc"}}}',
    "TMPDIR": "/tmp/wg-3f1c-x",
    "WEBGRID_NODE_WORKER": "w0@höst",
}


def test_orders_travel_as_one_line_and_come_back_whole() -> None:
    line = encode_orders(ORDERS)
    assert line.endswith(b"\n")
    assert line.count(b"\n") == 1
    assert parse_orders(line) == ORDERS


def test_a_value_with_a_newline_stays_on_the_line() -> None:
    line = encode_orders({"WEBGRID_NODE_CAPABILITIES": "first\nsecond"})
    assert line.count(b"\n") == 1
    assert parse_orders(line) == {"WEBGRID_NODE_CAPABILITIES": "first\nsecond"}


def test_end_of_file_means_no_orders() -> None:
    assert await_orders(io.BytesIO(b"")) is None


def test_the_first_line_is_read_and_no_more() -> None:
    stream = io.BytesIO(encode_orders(ORDERS) + b"the rest\n")
    assert await_orders(stream) == ORDERS
    assert stream.read() == b"the rest\n"


def test_broken_json_is_refused_saying_so() -> None:
    with pytest.raises(SettingsError, match="orders are not JSON"):
        parse_orders(b'{"TMPDIR": \n')


@pytest.mark.parametrize(
    "line",
    [
        b'["TMPDIR", "/tmp"]\n',
        b'"TMPDIR"\n',
        b"null\n",
        b'{"WEBGRID_SLOTS": 4}\n',
        b'{"TMPDIR": null}\n',
        b'{"WEBGRID_NODE_CAPABILITIES": {"browserName": "chrome"}}\n',
    ],
    ids=["array", "string", "null", "number", "null value", "object value"],
)
def test_anything_but_an_object_of_strings_is_refused(line: bytes) -> None:
    with pytest.raises(SettingsError, match="one JSON object of environment"):
        parse_orders(line)
