"""`X-RateLimit-*` and `Retry-After` parsing, and `client.rate_limit`.

aioresponses serves the exact header values (and a response with none) that the first
two client tests need; the fake always computes its own.
"""

from __future__ import annotations

import datetime as dt

import pytest
from aioresponses import aioresponses

from cs2cap_account import FakeClock, RateLimitError, RateLimitInfo
from cs2cap_account._ratelimit import parse_rate_limit, parse_retry_after

from ._support import key_body
from .conftest import MakeClient
from .test_retry_policy import KEY_URL

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


def test_all_headers_are_read() -> None:
    """Limit, remaining, reset (Unix timestamp), tier and `Retry-After` all land in the info."""
    headers = {
        "X-RateLimit-Limit": "300",
        "X-RateLimit-Remaining": "17",
        "X-RateLimit-Reset": "1767225660",
        "X-RateLimit-Tier": "quant",
        "Retry-After": "3",
    }

    info = parse_rate_limit(headers, now=NOW)

    assert info == RateLimitInfo(
        limit=300,
        remaining=17,
        reset_at=dt.datetime(2026, 1, 1, 0, 1, tzinfo=dt.timezone.utc),
        tier="quant",
        retry_after=3.0,
    )


@pytest.mark.parametrize(
    ("reset", "expected"),
    [
        ("42", NOW + dt.timedelta(seconds=42)),
        ("0", NOW),
        ("1000000000", NOW + dt.timedelta(seconds=1_000_000_000)),
        ("1000000001", dt.datetime.fromtimestamp(1_000_000_001, dt.timezone.utc)),
        ("-5", None),
        ("soon", None),
        ("99999999999999999999", None),
    ],
)
def test_reset_is_a_timestamp_above_one_billion_else_seconds_from_now(
    reset: str, expected: dt.datetime | None
) -> None:
    """`X-RateLimit-Reset` above 1,000,000,000 is a Unix timestamp; otherwise seconds from
    now. Negative, garbage and out-of-range values give no `reset_at`.
    """
    info = parse_rate_limit({"X-RateLimit-Reset": reset, "X-RateLimit-Tier": "pro"}, now=NOW)

    assert info is not None
    assert info.reset_at == expected


def test_no_rate_headers_give_none() -> None:
    """A response without any rate-limit header has no `RateLimitInfo`."""
    assert parse_rate_limit({"Content-Type": "application/json"}, now=NOW) is None
    assert parse_rate_limit({"X-RateLimit-Limit": "lots"}, now=NOW) is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("5", 5.0),
        (" 2.5 ", 2.5),
        ("-1", 0.0),
        ("inf", None),
        ("nan", None),
        ("tomorrow", None),
        ("", None),
        ("Thu, 01 Jan 2026 00:00:09 GMT", 9.0),
        ("Thu, 01 Jan 2026 00:00:09 -0000", 9.0),  # a date without a zone: UTC
        ("Wed, 31 Dec 2025 23:59:00 GMT", 0.0),
    ],
)
def test_retry_after_forms(value: str | None, expected: float | None) -> None:
    """`Retry-After` in delta-seconds or as an HTTP date; nonsense gives None, the past 0."""
    assert parse_retry_after(value, now=NOW) == expected


def test_retry_after_date_defaults_to_the_real_clock() -> None:
    """Without `now`, an HTTP date is measured against the real current time."""
    future = dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1)
    value = future.strftime("%a, %d %b %Y %H:%M:%S GMT")

    seconds = parse_retry_after(value)

    assert seconds is not None
    assert 3500 < seconds <= 3600
    info = parse_rate_limit({"X-RateLimit-Reset": "10"})
    assert info is not None
    assert info.reset_at is not None
    assert info.reset_at > dt.datetime.now(dt.timezone.utc)


async def test_client_rate_limit_follows_every_response(
    mocked: aioresponses, make_client: MakeClient
) -> None:
    """`client.rate_limit` is None before any response, then reflects the latest response
    that carried rate headers, error responses included.
    """
    mocked.get(KEY_URL, payload=key_body(), headers={"X-RateLimit-Remaining": "9"})
    mocked.get(
        KEY_URL,
        status=429,
        payload={"code": "RATE_LIMIT_EXCEEDED"},
        headers={"X-RateLimit-Remaining": "0", "Retry-After": "61"},
    )
    mocked.get(KEY_URL, payload=key_body())  # no rate headers: the last info stays
    client = make_client()
    assert client.rate_limit is None

    await client.get_key()
    assert client.rate_limit is not None
    assert client.rate_limit.remaining == 9

    with pytest.raises(RateLimitError) as caught:
        await client.get_key()
    assert client.rate_limit.remaining == 0
    assert client.rate_limit.retry_after == 61.0
    assert caught.value.rate_limit == client.rate_limit

    await client.get_key()
    assert client.rate_limit.remaining == 0


async def test_reset_in_seconds_counts_from_the_response_not_from_reading_it(
    mocked: aioresponses, make_client: MakeClient, clock: FakeClock
) -> None:
    """`X-RateLimit-Reset: 30` read 100 s after the response still says response + 30 s."""
    mocked.get(KEY_URL, payload=key_body(), headers={"X-RateLimit-Reset": "30"})
    client = make_client()
    await client.get_key()
    answered = clock.now()

    clock.advance(100)
    info = client.rate_limit

    assert info is not None
    assert info.reset_at == answered + dt.timedelta(seconds=30)


@pytest.mark.cs2cap_fake(tier="starter")
async def test_with_options_copies_share_rate_limit(make_fake_client: MakeClient) -> None:
    """A response through a copy updates `rate_limit` on the original too."""
    client = make_fake_client()

    await client.with_options(max_retries=0).get_key()

    assert client.rate_limit is not None
    assert client.rate_limit.tier == "starter"
