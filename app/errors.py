"""The grid's exceptions. Each WebDriver error knows its W3C code and status.

GridError
├── SettingsError            a setting in the environment is not valid
└── WebDriverError           answered to a client as a W3C error
    ├── InvalidArgument      400 invalid argument
    ├── InvalidSessionId     404 invalid session id
    ├── UnknownCommand       404 unknown command
    ├── UnknownMethod        405 unknown method
    ├── SessionNotCreated    500 session not created
    └── UnknownError         500 unknown error
"""

from __future__ import annotations

import json
import traceback


class GridError(Exception):
    """Base of every error the grid raises on purpose."""


class SettingsError(GridError):
    """An environment variable holds a value the grid cannot use."""


class WebDriverError(GridError):
    """An error that reaches the client as `{"value": {"error", ...}}`."""

    code = "unknown error"
    status = 500

    def __init__(self, message: str, *, session_id: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.session_id = session_id

    def to_json(self) -> dict[str, dict[str, str]]:
        """The W3C error body for this error."""
        return {
            "value": {
                "error": self.code,
                "message": self.message,
                "stacktrace": "".join(traceback.format_exception(self)),
            }
        }

    def to_bytes(self) -> bytes:
        return json.dumps(self.to_json()).encode()


class InvalidArgument(WebDriverError):
    code = "invalid argument"
    status = 400


class InvalidSessionId(WebDriverError):
    code = "invalid session id"
    status = 404


class UnknownCommand(WebDriverError):
    code = "unknown command"
    status = 404


class UnknownMethod(WebDriverError):
    code = "unknown method"
    status = 405


class SessionNotCreated(WebDriverError):
    code = "session not created"
    status = 500


class UnknownError(WebDriverError):
    code = "unknown error"
    status = 500


class Unauthorized(WebDriverError):
    """Basic auth is required and the request's credentials are not right."""

    code = "unknown error"
    status = 401


_BY_CODE = {
    cls.code: cls
    for cls in (
        InvalidArgument,
        InvalidSessionId,
        UnknownCommand,
        UnknownMethod,
        SessionNotCreated,
        UnknownError,
    )
}


def from_code(code: str, message: str) -> WebDriverError:
    """Rebuild an error that travelled through Redis as a code and a message."""
    return _BY_CODE.get(code, UnknownError)(message)
