"""The reissue verdict, by its table: probe answer x credential kind -> what to do."""

from __future__ import annotations

import pytest

from cs2cap_account._reissue import (
    REVOKED_CODES,
    Answered,
    NoAnswer,
    ProbeResult,
    Refused,
    Verdict,
    verdict,
)

BEFORE = "root-before"
OTHER = "root-other"

# (what the probe saw, verdict with the API key, verdict with a session JWT)
TABLE: list[tuple[ProbeResult, Verdict, Verdict]] = [
    (Answered(BEFORE, is_active=True), Verdict.RETRY, Verdict.RETRY),
    (Answered(BEFORE, is_active=False), Verdict.UNKNOWN, Verdict.REPLACE_LOST),
    (Answered(OTHER, is_active=True), Verdict.UNKNOWN, Verdict.REPLACE_LOST),
    (Answered(OTHER, is_active=False), Verdict.UNKNOWN, Verdict.REPLACE_LOST),
    (Refused("AUTH_API_KEY_REVOKED"), Verdict.LOST, Verdict.UNKNOWN),
    (Refused("AUTH_INVALID_API_KEY"), Verdict.LOST, Verdict.UNKNOWN),
    (Refused(None), Verdict.LOST, Verdict.UNKNOWN),
    (Refused("AUTH_API_KEY_EXPIRED"), Verdict.UNKNOWN, Verdict.UNKNOWN),
    (Refused("AUTH_ACCOUNT_DISABLED"), Verdict.UNKNOWN, Verdict.UNKNOWN),
    (Refused("UNAUTHORIZED"), Verdict.UNKNOWN, Verdict.UNKNOWN),
    (NoAnswer(), Verdict.UNKNOWN, Verdict.UNKNOWN),
]


@pytest.mark.parametrize(("seen", "with_key", "with_jwt"), TABLE, ids=repr)
def test_verdict_table(seen: ProbeResult, with_key: Verdict, with_jwt: Verdict) -> None:
    """Each row: the verdict for the API key and for a session JWT."""
    assert verdict(BEFORE, seen, via_jwt=False) is with_key
    assert verdict(BEFORE, seen, via_jwt=True) is with_jwt


def test_the_table_covers_every_verdict_and_every_revocation_code() -> None:
    """No verdict and no code that proves a revocation is left out of the table."""
    reached = {v for _, *verdicts in TABLE for v in verdicts}
    assert reached == set(Verdict)
    codes = {seen.code for seen, _, _ in TABLE if isinstance(seen, Refused)}
    assert codes >= REVOKED_CODES


def test_only_an_api_key_refused_as_revoked_is_lost() -> None:
    """`LOST` is said for exactly the API-key rows whose probe was refused as revoked."""
    lost = [seen for seen, with_key, _ in TABLE if with_key is Verdict.LOST]
    assert lost
    assert all(isinstance(seen, Refused) and seen.code in REVOKED_CODES for seen in lost)
    assert not any(with_jwt is Verdict.LOST for _, _, with_jwt in TABLE)
