"""How results are shown: ages and the rate-limit line."""

from __future__ import annotations

import datetime as dt

from cs2cap_account import RateLimitInfo
from cs2cap_account.cli._format import ago, rate_limit_text

NOW = dt.datetime(2026, 1, 31, 12, 0, tzinfo=dt.timezone.utc)


def test_ages_read_both_ways() -> None:
    """Past and future moments, from seconds to days, singular and plural."""
    assert ago(NOW, NOW).endswith("(just now)")
    assert ago(NOW + dt.timedelta(seconds=30), NOW).endswith("(in under a minute)")
    assert ago(NOW - dt.timedelta(minutes=1), NOW).endswith("(1 minute ago)")
    assert ago(NOW - dt.timedelta(hours=5), NOW).endswith("(5 hours ago)")
    assert ago(NOW + dt.timedelta(days=29, hours=23), NOW) == (
        "2026-03-02T11:00:00+00:00 (in 29 days)"
    )


def test_rate_limit_text_says_what_the_headers_said() -> None:
    """Only the parts the server sent; a sentence when it sent nothing."""
    assert rate_limit_text(None) == "the server sent no rate-limit headers"
    assert rate_limit_text(RateLimitInfo()) == "the server sent no rate-limit headers"
    assert rate_limit_text(RateLimitInfo(limit=60, retry_after=2.5)) == (
        "limit 60 requests/minute; retry after 2.5 s"
    )
    full = RateLimitInfo(limit=60, remaining=0, reset_at=NOW, tier="pro")
    assert rate_limit_text(full) == (
        "0 of 60 requests left in this minute; window resets 2026-01-31T12:00:00+00:00; tier pro"
    )
