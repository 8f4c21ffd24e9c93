"""The Redis key schema and the offers workers publish. No Redis needed."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from app import registry
from app.capabilities import Offer

KEY_BUILDERS: list[tuple[Callable[[str], str], str]] = [
    (registry.worker_key, "webgrid:worker:host-1@7"),
    (registry.manager_key, "webgrid:manager:host-1@7"),
    (registry.route_key, "webgrid:route:host-1@7"),
    (registry.session_key, "webgrid:session:host-1@7"),
    (registry.result_key, "webgrid:session:host-1@7:result"),
    (registry.direct_key, "webgrid:direct:host-1@7"),
    (registry.touch_key, "webgrid:touch:host-1@7"),
]


@pytest.mark.parametrize(("build", "expected"), KEY_BUILDERS)
def test_key_schema(build: Callable[[str], str], expected: str) -> None:
    assert build("host-1@7") == expected


def test_live_set_key() -> None:
    assert registry.LIVE_KEY == "webgrid:sessions:live"


def test_keys_of_one_id_are_all_different() -> None:
    keys = [build("s1") for build, _ in KEY_BUILDERS]
    assert len(set(keys)) == len(keys)


@pytest.mark.parametrize(
    ("prefix", "build"),
    [
        (registry.WORKER_PREFIX, registry.worker_key),
        (registry.MANAGER_PREFIX, registry.manager_key),
        (registry.ROUTE_PREFIX, registry.route_key),
        (registry.DIRECT_PREFIX, registry.direct_key),
    ],
)
def test_scanned_prefixes_give_back_the_name(
    prefix: str, build: Callable[[str], str]
) -> None:
    key = build("w-9")
    assert key.startswith(prefix)
    assert key[len(prefix) :] == "w-9"


def test_route_and_worker_keys_stay_out_of_the_session_prefix() -> None:
    for build in (registry.worker_key, registry.route_key, registry.manager_key):
        assert not build("s1").startswith(registry.SESSION_PREFIX)


def worker(*browsers: dict[str, Any]) -> dict[str, Any]:
    return {"name": "w", "slots": 2, "browsers": list(browsers)}


def test_offers_of_flattens_every_worker_s_browsers_in_order() -> None:
    workers = [
        worker(
            {"browserName": "chrome", "browserVersion": "156.0"},
            {"browserName": "firefox", "browserVersion": "153.0"},
        ),
        worker(
            {
                "browserName": "chrome",
                "browserVersion": "155.1",
                "platformName": "windows",
            }
        ),
    ]
    assert registry.offers_of(workers) == [
        Offer(browser_name="chrome", browser_version="156.0"),
        Offer(browser_name="firefox", browser_version="153.0"),
        Offer(browser_name="chrome", browser_version="155.1", platform_name="windows"),
    ]


def test_offers_of_defaults_the_platform_to_linux() -> None:
    offers = registry.offers_of(
        [worker({"browserName": "chrome", "browserVersion": "1"})]
    )
    assert [offer.platform_name for offer in offers] == ["linux"]


@pytest.mark.parametrize("workers", [[], [worker()], [worker(), worker()]])
def test_offers_of_no_browsers_is_empty(workers: list[dict[str, Any]]) -> None:
    assert registry.offers_of(workers) == []
