"""W3C capability processing, and matching against what workers offer.

`process()` follows the spec's "processing capabilities": validate
`alwaysMatch` and each `firstMatch`, merge them, and reject a key present in
both. `match()` then picks the first merged set that a live worker can serve.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from app.errors import InvalidArgument, SessionNotCreated

Capabilities = dict[str, Any]

_STRING_CAPS = ("browserName", "browserVersion", "platformName")
_BOOL_CAPS = (
    "acceptInsecureCerts",
    "strictFileInteractability",
    "setWindowRect",
    "webSocketUrl",
)
_OBJECT_CAPS = ("proxy", "timeouts")
_PAGE_LOAD_STRATEGIES = ("none", "eager", "normal")
_PROMPT_BEHAVIORS = (
    "dismiss",
    "accept",
    "dismiss and notify",
    "accept and notify",
    "ignore",
)
_ANY_VERSION = ("", "latest", "stable")

# Names clients use for a browser a worker offers under another name.
BROWSER_ALIASES = {"chromium": "chrome", "google chrome": "chrome"}


@dataclasses.dataclass(frozen=True, kw_only=True)
class Offer:
    """One browser that one worker can start."""

    browser_name: str
    browser_version: str
    platform_name: str = "linux"

    def label(self) -> str:
        major = self.browser_version.split(".", 1)[0]
        return f"{self.browser_name} {major}".strip()


def process(body: Any) -> list[Capabilities]:
    """Validate a new-session body and return its merged capability sets."""
    if not isinstance(body, dict):
        raise InvalidArgument("the new session body must be a JSON object")
    request = body.get("capabilities")
    if not isinstance(request, dict):
        raise InvalidArgument(
            "the new session body needs a 'capabilities' object with "
            "'alwaysMatch' and/or 'firstMatch'"
        )

    always = _validate(request.get("alwaysMatch", {}), "alwaysMatch")
    first_list = request.get("firstMatch", [{}])
    if not isinstance(first_list, list) or not first_list:
        raise InvalidArgument("'firstMatch' must be a non-empty JSON array")
    firsts = [
        _validate(entry, f"firstMatch[{index}]")
        for index, entry in enumerate(first_list)
    ]
    return [_merge(always, first) for first in firsts]


def _validate(caps: Any, where: str) -> Capabilities:
    if not isinstance(caps, dict):
        raise InvalidArgument(f"'{where}' must be a JSON object")
    valid: Capabilities = {}
    for name, value in caps.items():
        if value is None:
            continue
        _validate_one(name, value, where)
        valid[name] = value
    return valid


def _validate_one(name: str, value: Any, where: str) -> None:
    if name in _STRING_CAPS:
        _expect(isinstance(value, str), name, where, "a string")
    elif name in _BOOL_CAPS:
        _expect(isinstance(value, bool), name, where, "true or false")
    elif name in _OBJECT_CAPS:
        _expect(isinstance(value, dict), name, where, "a JSON object")
    elif name == "pageLoadStrategy":
        _expect(value in _PAGE_LOAD_STRATEGIES, name, where, "none, eager or normal")
    elif name == "unhandledPromptBehavior":
        ok = value in _PROMPT_BEHAVIORS or isinstance(value, dict)
        _expect(ok, name, where, "a prompt behaviour such as 'dismiss'")
    elif ":" not in name:
        raise InvalidArgument(
            f"'{where}' has '{name}', which is neither a W3C capability nor an "
            "extension capability (extensions contain a colon, like 'goog:...')"
        )


def _expect(ok: bool, name: str, where: str, what: str) -> None:
    if not ok:
        raise InvalidArgument(f"'{name}' in '{where}' must be {what}")


def _merge(always: Capabilities, first: Capabilities) -> Capabilities:
    clash = sorted(set(always) & set(first))
    if clash:
        raise InvalidArgument(
            f"'{clash[0]}' is in both 'alwaysMatch' and 'firstMatch'; "
            "the spec forbids that: keep it in one of them"
        )
    return {**always, **first}


GRID_OPTIONS = "webgrid:options"


@dataclasses.dataclass(frozen=True, kw_only=True)
class GridOptions:
    """What a client asks of the grid itself, in `webgrid:options`."""

    idle_timeout: float | None = None
    metadata: dict[str, str] = dataclasses.field(default_factory=dict)


def grid_options(caps: Mapping[str, Any]) -> GridOptions:
    """Validate and read `webgrid:options`; raise `InvalidArgument` if bad."""
    options = caps.get(GRID_OPTIONS, {})
    if not isinstance(options, dict):
        raise InvalidArgument(f"'{GRID_OPTIONS}' must be a JSON object")
    unknown = sorted(set(options) - {"idleTimeout", "metadata"})
    if unknown:
        raise InvalidArgument(
            f"'{GRID_OPTIONS}' has unknown key '{unknown[0]}'; "
            "known: idleTimeout, metadata"
        )
    return GridOptions(
        idle_timeout=_idle_timeout(options.get("idleTimeout")),
        metadata=_metadata(options.get("metadata", {})),
    )


def _idle_timeout(value: Any) -> float | None:
    if value is None:
        return None
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok or not 0 < value < float("inf"):
        raise InvalidArgument(
            f"'{GRID_OPTIONS}' idleTimeout must be a number of seconds above 0"
        )
    return float(value)


def _metadata(value: Any) -> dict[str, str]:
    ok = isinstance(value, dict) and all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    )
    if not ok:
        raise InvalidArgument(
            f"'{GRID_OPTIONS}' metadata must map strings to strings, "
            'for example {"test": "login works"}'
        )
    return dict(value)


def browser_of(caps: Mapping[str, Any]) -> str:
    """The offered browser name a capability set asks for ('' for any)."""
    name = str(caps.get("browserName", "")).strip().lower()
    return BROWSER_ALIASES.get(name, name)


def matches(caps: Mapping[str, Any], offer: Offer) -> bool:
    """Whether `offer` can serve `caps` (name, version prefix, platform)."""
    browser = browser_of(caps)
    if browser and browser != offer.browser_name:
        return False
    version = str(caps.get("browserVersion", "")).strip()
    if version.lower() not in _ANY_VERSION and not _version_matches(
        version, offer.browser_version
    ):
        return False
    platform = str(caps.get("platformName", "")).strip().lower()
    return platform in ("", "any", offer.platform_name.lower())


def _version_matches(asked: str, offered: str) -> bool:
    asked_parts = asked.split(".")
    offered_parts = offered.split(".")
    return offered_parts[: len(asked_parts)] == asked_parts


def match(
    candidates: Iterable[Capabilities], offers: Iterable[Offer]
) -> tuple[Capabilities, Offer]:
    """The first candidate some offer serves, with that offer.

    Raises `SessionNotCreated` naming what was asked and what is offered.
    """
    offer_list = list(offers)
    candidate_list = list(candidates)
    for caps in candidate_list:
        for offer in offer_list:
            if matches(caps, offer):
                return caps, offer
    raise SessionNotCreated(_no_match_message(candidate_list, offer_list))


def _no_match_message(candidates: list[Capabilities], offers: list[Offer]) -> str:
    asked = "; ".join(_describe(caps) for caps in candidates) or "anything"
    labels = sorted({offer.label() for offer in offers})
    offered = (
        ", ".join(labels) if labels else "nothing (no worker is alive to take sessions)"
    )
    return f"no worker offers {asked}; offered: {offered}"


def _describe(caps: Capabilities) -> str:
    parts = [f"{key} {caps[key]!r}" for key in _STRING_CAPS if key in caps]
    return ", ".join(parts) or "any browser"
