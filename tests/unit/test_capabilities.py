"""W3C capability processing and matching against offers."""

from __future__ import annotations

from typing import Any

import pytest

from app.capabilities import Offer, browser_of, match, matches, process
from app.errors import InvalidArgument, SessionNotCreated

CHROME = Offer(browser_name="chrome", browser_version="156.0.8078.114")
FIREFOX = Offer(browser_name="firefox", browser_version="153.0")


def body(always: Any = None, first: Any = None) -> dict[str, Any]:
    """A new-session body; a part left as None is left out."""
    request: dict[str, Any] = {}
    if always is not None:
        request["alwaysMatch"] = always
    if first is not None:
        request["firstMatch"] = first
    return {"capabilities": request}


def rejected(payload: Any) -> str:
    """The message of the InvalidArgument that `process(payload)` raises."""
    with pytest.raises(InvalidArgument) as caught:
        process(payload)
    return caught.value.message


# -- process: merging ----------------------------------------------------------


def test_empty_request_gives_one_empty_set() -> None:
    assert process(body()) == [{}]


def test_always_match_alone_gives_one_set() -> None:
    assert process(body(always={"browserName": "chrome"})) == [
        {"browserName": "chrome"}
    ]


def test_always_match_is_merged_into_each_first_match_in_order() -> None:
    merged = process(
        body(
            always={"acceptInsecureCerts": True},
            first=[{"browserName": "firefox"}, {"browserName": "chrome"}],
        )
    )
    assert merged == [
        {"acceptInsecureCerts": True, "browserName": "firefox"},
        {"acceptInsecureCerts": True, "browserName": "chrome"},
    ]


def test_key_in_both_always_and_first_match_is_rejected() -> None:
    payload = body(
        always={"browserName": "chrome"},
        first=[{"platformName": "linux"}, {"browserName": "firefox"}],
    )
    message = rejected(payload)
    assert "browserName" in message
    assert "alwaysMatch" in message and "firstMatch" in message


def test_null_values_are_dropped_and_do_not_clash() -> None:
    merged = process(
        body(
            always={"browserName": None, "platformName": "linux"},
            first=[{"browserName": "chrome", "browserVersion": None}],
        )
    )
    assert merged == [{"platformName": "linux", "browserName": "chrome"}]


def test_extension_capabilities_pass_untouched() -> None:
    options = {"args": ["--window-size=800,600"]}
    merged = process(
        body(always={"goog:chromeOptions": options, "webgrid:options": {"a": 1}})
    )
    assert merged == [{"goog:chromeOptions": options, "webgrid:options": {"a": 1}}]


# -- process: shape of the body ------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [
        None,
        [],
        "capabilities",
        {},
        {"capabilities": None},
        {"capabilities": []},
        {"desiredCapabilities": {"browserName": "chrome"}},
    ],
)
def test_body_without_a_capabilities_object_is_rejected(payload: Any) -> None:
    rejected(payload)


@pytest.mark.parametrize("first", [[], {}, "chrome", None, 1])
def test_first_match_must_be_a_non_empty_list(first: Any) -> None:
    payload = {"capabilities": {"firstMatch": first}}
    assert "firstMatch" in rejected(payload)


@pytest.mark.parametrize("entry", [None, [], "chrome", 1, True])
def test_each_first_match_entry_must_be_an_object(entry: Any) -> None:
    assert "firstMatch[1]" in rejected(body(first=[{}, entry]))


@pytest.mark.parametrize("always", [[], "chrome", 1, True])
def test_always_match_must_be_an_object(always: Any) -> None:
    assert "alwaysMatch" in rejected(body(always=always))


def test_always_match_null_is_rejected_as_not_an_object() -> None:
    # The spec treats only an absent alwaysMatch as empty; null is not an object.
    assert "alwaysMatch" in rejected({"capabilities": {"alwaysMatch": None}})


# -- process: standard capability types ----------------------------------------

VALID = [
    ("browserName", "chrome"),
    ("browserVersion", "156"),
    ("platformName", "linux"),
    ("acceptInsecureCerts", True),
    ("strictFileInteractability", False),
    ("setWindowRect", True),
    ("webSocketUrl", True),
    ("proxy", {"proxyType": "direct"}),
    ("timeouts", {"implicit": 0, "pageLoad": 300000}),
    ("pageLoadStrategy", "none"),
    ("pageLoadStrategy", "eager"),
    ("pageLoadStrategy", "normal"),
    ("unhandledPromptBehavior", "dismiss"),
    ("unhandledPromptBehavior", "accept and notify"),
    ("unhandledPromptBehavior", "ignore"),
    ("unhandledPromptBehavior", {"alert": "accept"}),
    ("goog:chromeOptions", {"args": []}),
    ("moz:firefoxOptions", "anything goes in an extension"),
    ("se:name", "my test"),
]

INVALID = [
    ("browserName", 1),
    ("browserName", True),
    ("browserVersion", 156),
    ("platformName", ["linux"]),
    ("acceptInsecureCerts", "true"),
    ("acceptInsecureCerts", 1),
    ("strictFileInteractability", 0),
    ("setWindowRect", "yes"),
    ("webSocketUrl", "ws://x"),
    ("proxy", "direct"),
    ("proxy", []),
    ("timeouts", 1000),
    ("pageLoadStrategy", "fast"),
    ("pageLoadStrategy", "NORMAL"),
    ("pageLoadStrategy", True),
    ("unhandledPromptBehavior", "close"),
    ("unhandledPromptBehavior", 1),
    ("chromeOptions", {"args": []}),
    ("browser", "chrome"),
]


@pytest.mark.parametrize(("name", "value"), VALID)
def test_valid_capability_is_kept(name: str, value: Any) -> None:
    assert process(body(always={name: value})) == [{name: value}]


@pytest.mark.parametrize(("name", "value"), INVALID)
@pytest.mark.parametrize("where", ["alwaysMatch", "firstMatch"])
def test_invalid_capability_is_rejected_naming_it(
    name: str, value: Any, where: str
) -> None:
    payload = (
        body(always={name: value})
        if where == "alwaysMatch"
        else body(first=[{name: value}])
    )
    message = rejected(payload)
    assert name in message
    assert where in message


def test_rejection_is_an_http_400_invalid_argument() -> None:
    with pytest.raises(InvalidArgument) as caught:
        process(body(always={"browserName": 1}))
    assert caught.value.status == 400
    assert caught.value.code == "invalid argument"


# -- matching --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("chrome", "chrome"),
        ("Chrome", "chrome"),
        (" chromium ", "chrome"),
        ("Google Chrome", "chrome"),
        ("firefox", "firefox"),
        ("", ""),
    ],
)
def test_browser_of_lowers_and_resolves_aliases(name: str, expected: str) -> None:
    assert browser_of({"browserName": name}) == expected


def test_browser_of_without_a_name_is_any() -> None:
    assert browser_of({}) == ""


@pytest.mark.parametrize(
    ("caps", "expected"),
    [
        ({}, True),
        ({"browserName": "chrome"}, True),
        ({"browserName": "chromium"}, True),
        ({"browserName": "CHROME"}, True),
        ({"browserName": "firefox"}, False),
        ({"browserName": "safari"}, False),
        ({"browserVersion": "156"}, True),
        ({"browserVersion": "156.0"}, True),
        ({"browserVersion": "156.0.8078.114"}, True),
        ({"browserVersion": " 156 "}, True),
        ({"browserVersion": "15"}, False),
        ({"browserVersion": "1"}, False),
        ({"browserVersion": "156.0.80"}, False),
        ({"browserVersion": "157"}, False),
        ({"browserVersion": "156.0.8078.114.1"}, False),
        ({"browserVersion": "latest"}, True),
        ({"browserVersion": "Latest"}, True),
        ({"browserVersion": "stable"}, True),
        ({"browserVersion": ""}, True),
        ({"platformName": "linux"}, True),
        ({"platformName": "Linux"}, True),
        ({"platformName": "LINUX"}, True),
        ({"platformName": "any"}, True),
        ({"platformName": "ANY"}, True),
        ({"platformName": ""}, True),
        ({"platformName": "windows"}, False),
        ({"platformName": "mac"}, False),
        ({"browserName": "chrome", "browserVersion": "156"}, True),
        ({"browserName": "chrome", "platformName": "windows"}, False),
        ({"browserName": "firefox", "browserVersion": "156"}, False),
    ],
)
def test_matches_chrome_offer(caps: dict[str, Any], expected: bool) -> None:
    assert matches(caps, CHROME) is expected


def test_offer_platform_is_compared_case_insensitively() -> None:
    offer = Offer(browser_name="chrome", browser_version="156", platform_name="Linux")
    assert matches({"platformName": "linux"}, offer)


def test_match_takes_first_candidate_that_any_offer_serves() -> None:
    candidates = [
        {"browserName": "safari"},
        {"browserName": "firefox"},
        {"browserName": "chrome"},
    ]
    caps, offer = match(candidates, [CHROME, FIREFOX])
    assert caps == {"browserName": "firefox"}
    assert offer == FIREFOX


def test_match_returns_the_offer_that_serves_the_candidate() -> None:
    caps, offer = match([{"browserVersion": "153"}], [CHROME, FIREFOX])
    assert caps == {"browserVersion": "153"}
    assert offer == FIREFOX


def test_match_accepts_generators() -> None:
    caps, offer = match(({"browserName": n} for n in ["chrome"]), iter([CHROME]))
    assert (caps, offer) == ({"browserName": "chrome"}, CHROME)


def no_match_message(candidates: list[dict[str, Any]], offers: list[Offer]) -> str:
    with pytest.raises(SessionNotCreated) as caught:
        match(candidates, offers)
    assert caught.value.status == 500
    return caught.value.message


def test_no_match_names_what_was_asked_and_offered() -> None:
    message = no_match_message([{"browserName": "safari"}], [CHROME, FIREFOX])
    assert "browserName 'safari'" in message
    assert "offered: chrome 156, firefox 153" in message


def test_no_match_names_the_version_asked() -> None:
    message = no_match_message(
        [{"browserName": "chrome", "browserVersion": "15"}], [CHROME]
    )
    assert "browserVersion '15'" in message
    assert "chrome 156" in message


def test_no_match_lists_each_candidate() -> None:
    message = no_match_message(
        [{"browserName": "safari"}, {"browserName": "edge"}], [CHROME]
    )
    assert "'safari'" in message and "'edge'" in message


def test_no_match_lists_each_offered_label_once() -> None:
    message = no_match_message([{"browserName": "safari"}], [CHROME, CHROME])
    assert message.count("chrome 156") == 1


def test_no_match_without_offers_says_no_worker_is_alive() -> None:
    message = no_match_message([{}], [])
    assert "any browser" in message
    assert "no worker is alive" in message


@pytest.mark.parametrize(
    ("version", "label"),
    [("156.0.8078.114", "chrome 156"), ("156", "chrome 156"), ("", "chrome")],
)
def test_offer_label_shows_the_major_version(version: str, label: str) -> None:
    assert Offer(browser_name="chrome", browser_version=version).label() == label


def test_process_then_match_picks_the_first_servable_first_match() -> None:
    candidates = process(
        body(
            always={"platformName": "linux"},
            first=[{"browserName": "safari"}, {"browserName": "chromium"}],
        )
    )
    caps, offer = match(candidates, [FIREFOX, CHROME])
    assert caps == {"platformName": "linux", "browserName": "chromium"}
    assert offer == CHROME
