"""Metrics and health endpoints over real HTTP: `/metrics`, `/livez`, `/readyz`.

A rotator and its client are instrumented into a registry of the test's own and served
by `cs2cap_account.metrics.serve` on a loopback port; each scrape is parsed with
prometheus-client's text parser. Time is virtual: the key ages as the clock advances.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
import attrs
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from cs2cap_account import (
    AccountClient,
    FakeClock,
    KeyRotator,
    MemoryKeyStore,
    RotationError,
)
from cs2cap_account.metrics import HealthServer, instrument, serve
from cs2cap_account.metrics._labels import reason_label, route_of
from cs2cap_account.testing import FakeCS2CapAPI

from .conftest import FAKE_BASE_URL, put_new_key

Samples = Mapping[tuple[str, frozenset[tuple[str, str]]], float]


@attrs.frozen
class Served:
    """A rotator, instrumented and served over HTTP."""

    rotator: KeyRotator
    server: HealthServer
    http: aiohttp.ClientSession

    async def scrape(self) -> Samples:
        """GET /metrics and parse it: value by (sample name, labels)."""
        async with self.http.get(self.server.url + "/metrics") as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"].startswith("text/plain")
            text = await resp.text()
        samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                samples[sample.name, frozenset(sample.labels.items())] = sample.value
        return samples

    async def ready(self) -> tuple[int, Any]:
        """GET /readyz: status and JSON body."""
        async with self.http.get(self.server.url + "/readyz") as resp:
            return resp.status, await resp.json()


def value(samples: Samples, name: str, **labels: str) -> float | None:
    """The sample `name{labels}`, or None if absent."""
    return samples.get((name, frozenset(labels.items())))


@pytest.fixture
async def served(
    fake_client: AccountClient, store: MemoryKeyStore, registry: CollectorRegistry
) -> AsyncIterator[Served]:
    """A rotator (max_age 30 days) with its client instrumented, served on a free port."""
    rotator = KeyRotator(fake_client, store=store, max_age=dt.timedelta(days=30))
    instrument(rotator=rotator, client=fake_client, registry=registry)
    server = await serve(rotator, registry, host="127.0.0.1", port=0)
    async with aiohttp.ClientSession() as http:
        yield Served(rotator, server, http)
    await server.aclose()


async def test_values_move_through_a_rotation_a_failure_a_halt_and_a_recovery(
    served: Served,
    fake: FakeCS2CapAPI,
    store: MemoryKeyStore,
    session_client: AccountClient,
    clock: FakeClock,
) -> None:
    """Scraped over HTTP at each turn: generation, key age (virtual time), next due time,
    requests by route and status, rotations by reason, failures by stage, halted 0/1 and
    halts; `/readyz` flips to 503 with reasons when the key is lost without a recovery
    token and back to 200 once a new key is stored and checked.
    """
    rotator = served.rotator
    status, body = await served.ready()
    assert status == 503 and "not known yet" in body["reasons"][0]
    fake.age_root_key(dt.timedelta(days=10))
    await rotator.check()
    first = await served.scrape()
    assert value(first, "cs2cap_key_generation") == 1
    age = value(first, "cs2cap_key_age_seconds")
    assert age is not None and abs(age - 10 * 86_400) < 60
    due = value(first, "cs2cap_next_rotation_due_timestamp_seconds")
    assert due is not None and abs(due - (clock.now().timestamp() + 20 * 86_400)) < 60
    assert value(first, "cs2cap_requests_total", method="GET", route="/account/key", status="200")
    assert value(first, "cs2cap_rotator_halted") == 0
    assert value(first, "cs2cap_rotations_total", reason="manual") == 0
    assert value(first, "cs2cap_rate_limit_remaining") is not None
    assert (await served.ready())[0] == 200

    clock.advance(3600)
    later = await served.scrape()
    assert value(later, "cs2cap_key_age_seconds") == pytest.approx(age + 3600)

    event = await rotator.rotate_now()
    rotated = await served.scrape()
    assert value(rotated, "cs2cap_key_generation") == 2
    assert value(rotated, "cs2cap_rotations_total", reason="manual") == 1
    assert value(rotated, "cs2cap_last_rotation_timestamp_seconds") == pytest.approx(
        event.rotated_at.timestamp()
    )
    assert value(
        rotated, "cs2cap_requests_total", method="POST", route="/account/key/reissue", status="200"
    )
    histogram = value(
        rotated, "cs2cap_request_duration_seconds_count", method="GET", route="/account/key"
    )
    assert histogram is not None and histogram >= 2

    fake.faults.fail("reissue_key", status=403, code="EMAIL_NOT_VERIFIED")
    with pytest.raises(RotationError):
        await rotator.rotate_now()
    failed = await served.scrape()
    assert value(failed, "cs2cap_rotation_failures_total", stage="reissue") == 1
    assert value(failed, "cs2cap_rotator_halted") == 0

    fake.faults.drop_after_commit("reissue_key")
    with pytest.raises(RotationError):
        await rotator.rotate_now()
    halted = await served.scrape()
    assert value(halted, "cs2cap_rotation_failures_total", stage="reissue") == 2
    assert value(halted, "cs2cap_rotator_halted") == 1
    assert value(halted, "cs2cap_rotation_halts_total") == 1
    status, body = await served.ready()
    assert status == 503 and body["ready"] is False
    assert any(reason.startswith("halted: ") for reason in body["reasons"])

    new_id = await put_new_key(store, session_client, clock)
    await rotator.check()
    recovered = await served.scrape()
    assert value(recovered, "cs2cap_rotator_halted") == 0
    assert value(recovered, "cs2cap_key_generation") == 3
    assert value(recovered, "cs2cap_rotations_total", reason="adopted") == 1
    status, body = await served.ready()
    assert (status, body["ready"], body["key_id"]) == (200, True, new_id)


async def test_recoveries_retries_and_callback_failures_are_counted(
    fake: FakeCS2CapAPI,
    fake_client: AccountClient,
    store: MemoryKeyStore,
    registry: CollectorRegistry,
) -> None:
    """A lost response recovered with the token counts a recovery; a 503 answered then
    retried counts a retry; a callback failing every try counts a callback failure.
    """
    rotator = KeyRotator(fake_client, store=store, recovery_token=fake.session_token)

    def broken(_: object) -> None:
        raise RuntimeError("callback down (simulated)")

    rotator.on_rotate(broken)
    metrics = instrument(rotator=rotator, client=fake_client, registry=registry)
    fake.faults.fail("get_key", status=503)
    await rotator.check()
    fake.faults.drop_after_commit("reissue_key")
    await rotator.rotate_now()
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(metrics.exposition().decode()):
        for sample in family.samples:
            samples[sample.name, frozenset(sample.labels.items())] = sample.value
    assert value(samples, "cs2cap_recoveries_total") == 1
    assert value(samples, "cs2cap_retries_total", method="GET", route="/account/key") == 1
    assert value(samples, "cs2cap_callback_failures_total") == 1
    assert value(samples, "cs2cap_rotations_total", reason="manual") == 1


async def test_a_child_rotated_on_its_own_is_counted_apart_from_root_rotations(
    fake: FakeCS2CapAPI,
    fake_client: AccountClient,
    store: MemoryKeyStore,
    registry: CollectorRegistry,
) -> None:
    """`cs2cap_child_rotations_total{reason}` counts child keys rotated on their own;
    `cs2cap_rotations_total` (root keys) does not move for them. Scraped over HTTP.
    """
    fake.add_child_key("bot")
    rotator = KeyRotator(fake_client, store=store, recreate_sub_keys=True)
    instrument(rotator=rotator, client=fake_client, registry=registry)
    server = await serve(rotator, registry, host="127.0.0.1", port=0)
    try:
        async with aiohttp.ClientSession() as http:
            served = Served(rotator, server, http)
            await rotator.rotate_now()
            before = await served.scrape()
            await rotator.rotate_child_now("bot")
            after = await served.scrape()
    finally:
        await server.aclose()
    assert value(before, "cs2cap_child_rotations_total", reason="manual") == 0
    assert value(after, "cs2cap_child_rotations_total", reason="manual") == 1
    assert value(after, "cs2cap_child_rotations_total", reason="max_age") == 0
    assert value(after, "cs2cap_rotations_total", reason="manual") == 1  # the root's, only


async def test_livez_answers_while_the_process_runs(served: Served) -> None:
    """`/livez` is 200 whatever the rotator's state, before any check too."""
    async with served.http.get(served.server.url + "/livez") as resp:
        assert resp.status == 200
        assert await resp.json() == {"live": True}


async def test_readyz_is_503_while_the_store_cannot_be_read(
    served: Served, store: MemoryKeyStore
) -> None:
    """A store that fails to load makes `/readyz` 503, naming the store."""
    await served.rotator.check()
    assert (await served.ready())[0] == 200

    async def unreadable() -> None:
        raise OSError("disk gone (simulated)")

    store.load = unreadable  # type: ignore[method-assign]
    status, body = await served.ready()
    assert status == 503
    assert body["reasons"] == ["the key store cannot be read (OSError: disk gone (simulated))"]


@pytest.mark.parametrize(
    ("path", "route"),
    [
        ("/account/key", "/account/key"),
        ("/v1/account/key/reissue", "/account/key/reissue"),
        ("https://api.example/v1/account/sub-keys", "/account/sub-keys"),
        ("/account/sub-keys/key_123", "/account/sub-keys/{id}"),
        ("/account/sub-keys/key_123/reissue", "/account/sub-keys/{id}/reissue"),
        ("/account/sub-keys/a/b", "other"),
        ("/health", "other"),
    ],
)
def test_routes_are_templates(path: str, route: str) -> None:
    """A path's label is its route template: no id of a key, nothing outside the list."""
    assert route_of(path) == route


def test_a_callers_reason_is_labelled_manual() -> None:
    """The rotator's own reasons are kept; a caller's text becomes `manual`."""
    assert reason_label("max_age") == "max_age"
    assert reason_label("deploy 42 by alice") == "manual"


async def test_instrument_and_serve_validate_their_arguments(fake_client: AccountClient) -> None:
    """Wrong types and an empty call are refused at the boundary."""
    with pytest.raises(ValueError, match="needs a rotator"):
        instrument()
    with pytest.raises(TypeError):
        instrument(rotator=fake_client)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        instrument(client="client")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        instrument(client=fake_client, registry={})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="port"):
        await serve(KeyRotator(fake_client), port=70_000)


async def test_serve_on_a_port_in_use_fails_and_cleans_up(
    served: Served, fake_client: AccountClient
) -> None:
    """A second server on the same port raises OSError; the first keeps answering."""
    with pytest.raises(OSError):  # noqa: PT011 - the OS's own error, whatever its errno
        await serve(served.rotator, host="127.0.0.1", port=served.server.port)
    async with served.http.get(served.server.url + "/livez") as resp:
        assert resp.status == 200


def test_health_app_and_the_metrics_package_refuse_what_they_do_not_know() -> None:
    """A non-rotator is a TypeError; an unknown name of the package an AttributeError."""
    from cs2cap_account import metrics
    from cs2cap_account.metrics import health_app

    with pytest.raises(TypeError):
        health_app("rotator")  # type: ignore[arg-type]
    with pytest.raises(AttributeError):
        _ = metrics.nothing_here
    assert {"instrument", "trace", "serve"} <= set(dir(metrics))


async def test_a_key_adopted_from_the_store_is_tried_once_by_readyz(
    served: Served,
    fake: FakeCS2CapAPI,
    fake_client: AccountClient,
    store: MemoryKeyStore,
    clock: FakeClock,
) -> None:
    """Another process rotates; this rotator adopts the new key from the store (as it
    follows the store): `status()` cannot tell yet whether it authenticates, and makes no
    call; `/readyz` tries it once (`status(verify=True)`) and is ready.
    """
    await served.rotator.check()
    async with AccountClient(
        fake.root_key,
        base_url=FAKE_BASE_URL,
        transport=fake.transport(clock=clock),
        clock=clock,
    ) as other_client:
        other = KeyRotator(other_client, store=store)
        event = await other.rotate_now()
    await served.rotator._catch_up.catch_up()  # what following the store's changes does
    calls = sum(fake.requests.values())
    adopted = await served.rotator.status()
    assert (adopted.key_id, adopted.key_authenticates, adopted.ready) == (
        event.key_id,
        None,
        False,
    )
    assert sum(fake.requests.values()) == calls, "status() made no call"
    status, body = await served.ready()
    assert (status, body["key_id"]) == (200, event.key_id)
    assert (await served.rotator.status()).key_authenticates is True
