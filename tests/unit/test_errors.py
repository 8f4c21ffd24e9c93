"""The W3C code and HTTP status of each grid error, and its JSON body."""

from __future__ import annotations

import json

import pytest

from app.errors import (
    GridError,
    InvalidArgument,
    InvalidSessionId,
    SessionNotCreated,
    SettingsError,
    UnknownCommand,
    UnknownError,
    UnknownMethod,
    WebDriverError,
    from_code,
)

# The W3C WebDriver error table, for the errors the grid answers with.
W3C_TABLE = [
    (InvalidArgument, "invalid argument", 400),
    (InvalidSessionId, "invalid session id", 404),
    (UnknownCommand, "unknown command", 404),
    (UnknownMethod, "unknown method", 405),
    (SessionNotCreated, "session not created", 500),
    (UnknownError, "unknown error", 500),
]


@pytest.mark.parametrize(("cls", "code", "status"), W3C_TABLE)
def test_code_and_status_follow_the_w3c_table(
    cls: type[WebDriverError], code: str, status: int
) -> None:
    error = cls("boom")
    assert (error.code, error.status) == (code, status)
    assert isinstance(error, WebDriverError)
    assert isinstance(error, GridError)


@pytest.mark.parametrize(("cls", "code", "status"), W3C_TABLE)
def test_from_code_round_trips(
    cls: type[WebDriverError], code: str, status: int
) -> None:
    error = from_code(cls("lost").code, "lost")
    assert type(error) is cls
    assert error.message == "lost"
    assert (error.code, error.status) == (code, status)


@pytest.mark.parametrize("code", ["timeout", "no such element", "", "Invalid Argument"])
def test_from_code_of_an_unknown_code_is_unknown_error(code: str) -> None:
    error = from_code(code, "something went wrong")
    assert type(error) is UnknownError
    assert error.status == 500
    assert error.message == "something went wrong"


def test_to_json_has_the_w3c_shape() -> None:
    body = InvalidSessionId("no session abc", session_id="abc").to_json()
    assert list(body) == ["value"]
    assert set(body["value"]) == {"error", "message", "stacktrace"}
    assert body["value"]["error"] == "invalid session id"
    assert body["value"]["message"] == "no session abc"
    assert isinstance(body["value"]["stacktrace"], str)


def test_to_json_stacktrace_of_a_raised_error_names_it() -> None:
    try:
        raise SessionNotCreated("no worker offers safari")
    except SessionNotCreated as error:
        stacktrace = error.to_json()["value"]["stacktrace"]
    assert "SessionNotCreated" in stacktrace
    assert "no worker offers safari" in stacktrace


def test_to_bytes_is_the_json_body() -> None:
    error = UnknownMethod("DELETE is not allowed on /status")
    assert json.loads(error.to_bytes()) == error.to_json()


def test_error_keeps_the_session_it_concerns() -> None:
    error = InvalidArgument("bad", session_id="s-1")
    assert error.session_id == "s-1"
    assert InvalidArgument("bad").session_id is None
    assert str(error) == "bad"


def test_settings_error_is_a_grid_error_but_not_a_webdriver_error() -> None:
    error = SettingsError("WEBGRID_SLOTS='0' is not valid")
    assert isinstance(error, GridError)
    assert not isinstance(error, WebDriverError)
