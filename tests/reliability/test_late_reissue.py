"""A reissue that timed out can still be carried out by the server, after the SDK gave up.

The chaos soak found it: the first attempt times out while the server is still working on
it; the probe sees the old key active ("not applied"), the retries fail with 503, and the
reissue was reported as refused, with nothing revoked. Then the first attempt landed: the
old key was revoked, the new one lost, and the rotation journal already closed, so the
rotator was stuck on a dead key. Replayed with scripted faults.
"""

from __future__ import annotations

import pytest

from cs2cap_account import (
    AccountClient,
    FakeClock,
    KeyRotator,
    MemoryKeyStore,
    ReissueOutcomeUnknownError,
    RotationError,
)
from cs2cap_account.testing import FakeCS2CapAPI

from ._chaos import server_idle

TIMEOUT = 0.1  # real seconds
LATE = 0.3  # the first attempt's handler runs this long after it arrived


def _slow_first_then_refused(api: FakeCS2CapAPI) -> None:
    api.faults.delay("reissue_key", LATE)
    api.faults.fail("reissue_key", status=503, times=2)


async def test_a_timed_out_reissue_whose_retries_fail_is_of_unknown_outcome(
    api: FakeCS2CapAPI, clock: FakeClock
) -> None:
    """The client cannot prove a timed-out attempt will not still land: it says
    `ReissueOutcomeUnknownError`, not the last retry's 503.
    """
    async with AccountClient(
        api.root_key, base_url=api.base_url, clock=clock, timeout=TIMEOUT
    ) as client:
        _slow_first_then_refused(api)
        with pytest.raises(ReissueOutcomeUnknownError):
            await client.reissue_key()
    await server_idle()
    assert api.reissues == 1  # it did land


async def test_the_rotator_keeps_the_journal_open_and_recovers_once_it_lands(
    api: FakeCS2CapAPI, clock: FakeClock
) -> None:
    """The rotation fails without closing its journal; once the late attempt has landed,
    the next check finds the stored key revoked and recovers through the session token.
    """
    store = MemoryKeyStore()
    async with AccountClient(
        api.root_key, base_url=api.base_url, clock=clock, timeout=TIMEOUT
    ) as client:
        rotator = KeyRotator(client, store=store, recovery_token=api.session_token)
        await rotator.check()
        _slow_first_then_refused(api)
        with pytest.raises(RotationError) as caught:
            await rotator.rotate_now()
        assert isinstance(caught.value.__cause__, ReissueOutcomeUnknownError)
        pending = await store.load()
        assert pending is not None
        assert pending.pending is not None
        await server_idle()

        await rotator.check()

        record = await store.load()
        assert record is not None
        assert (record.generation, record.pending) == (2, None)
        assert api.is_active(record.key)
        assert client.api_key == record.key
        assert api.reissues == 2
        assert rotator.recoveries == 1
