"""`AccountClient.server_date`: the server's time from the latest response's `Date`."""

from __future__ import annotations

import datetime as dt

import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from cs2cap_account import AccountClient, FakeClock
from cs2cap_account._secret import SecretKey
from cs2cap_account._session import Credentials, Shared
from cs2cap_account.testing import FakeCS2CapAPI


async def test_the_date_of_the_latest_response_is_the_server_time(
    fake: FakeCS2CapAPI, fake_client: AccountClient, clock: FakeClock
) -> None:
    """After a call, `server_date` is the fake's wall-clock time, to the second."""
    assert fake_client.server_date is None
    await fake_client.get_key()
    seen = fake_client.server_date
    assert seen is not None
    assert seen.tzinfo is not None
    assert abs(seen - clock.now()) < dt.timedelta(seconds=1)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("Tue, 01 Dec 2026 22:00:00 GMT", dt.datetime(2026, 12, 1, 22, tzinfo=dt.timezone.utc)),
        ("Tue, 01 Dec 2026 23:00:00 +0100", dt.datetime(2026, 12, 1, 22, tzinfo=dt.timezone.utc)),
        ("Tue, 01 Dec 2026 22:00:00 -0000", dt.datetime(2026, 12, 1, 22, tzinfo=dt.timezone.utc)),
        ("yesterday", None),
        ("", None),
        (None, None),
    ],
)
def test_a_date_header_is_read_in_utc_or_not_at_all(
    header: str | None, expected: dt.datetime | None
) -> None:
    """Readable `Date`s become UTC datetimes; missing or unreadable ones are None."""
    shared = Shared(
        transport=None,  # type: ignore[arg-type]
        base_url="https://fake.test/v1",
        credentials=Credentials(SecretKey("sk_live_x_0"), None, "test"),
    )
    headers = CIMultiDict[str]()
    if header is not None:
        headers["Date"] = header
    shared.saw_headers(CIMultiDictProxy(headers))
    assert shared.server_date == expected
