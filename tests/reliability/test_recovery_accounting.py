"""`rotator.recoveries` accounts for every reissue the server made beyond one per rotation.

The chaos soak checks `reissues == rotations that took effect + recoveries` after every
rotation; these are the cases it found miscounted, replayed with scripted faults.
"""

from __future__ import annotations

import pytest

from cs2cap_account import AccountClient, KeyRotator, MemoryKeyStore, RotationError
from cs2cap_account.testing import FakeCS2CapAPI


async def _started(client: AccountClient, api: FakeCS2CapAPI) -> tuple[KeyRotator, MemoryKeyStore]:
    store = MemoryKeyStore()
    rotator = KeyRotator(client, store=store, recovery_token=api.session_token)
    await rotator.check()  # generation 1
    return rotator, store


async def test_a_lost_recovery_that_is_reissued_again_counts_twice(
    api: FakeCS2CapAPI, client: AccountClient
) -> None:
    """The reissue's response is lost, and so is the first recovery's: the session JWT
    sees the active key moved and reissues again. Three reissues, one rotation, so two
    recoveries.
    """
    rotator, store = await _started(client, api)
    api.faults.drop_after_commit("reissue_key", times=2)

    event = await rotator.rotate_now()

    record = await store.load()
    assert record is not None
    assert (event.generation, record.generation) == (2, 2)
    assert api.reissues == 3
    assert rotator.recoveries == 2
    assert api.reissues == (record.generation - 1) + rotator.recoveries
    assert api.is_active(record.key)


async def test_a_recovery_of_unknown_outcome_that_did_reissue_is_counted_later(
    api: FakeCS2CapAPI, client: AccountClient
) -> None:
    """The first recovery's response is lost and the probe that would tell fails: the
    rotation ends in a RotationError. The next check finds the active key moved since,
    so that recovery did reissue: it counts, with the one that then succeeds.
    """
    rotator, store = await _started(client, api)
    api.faults.drop_after_commit("reissue_key", times=2)
    # get_key: the reissue's probe of the old key, the lost-key probe, the rescuer's look
    # at the active key and its own probe before reissuing pass; then its probe fails.
    api.faults.delay("get_key", 0.0, times=4)
    api.faults.fail("get_key", times=3)

    with pytest.raises(RotationError, match="recovering it with the recovery token failed"):
        await rotator.rotate_now()
    assert api.reissues == 2
    assert api.faults.pending == 0

    await rotator.check()

    record = await store.load()
    assert record is not None
    assert (record.generation, record.pending) == (2, None)
    assert api.reissues == 3
    assert rotator.recoveries == 2
    assert api.reissues == (record.generation - 1) + rotator.recoveries


async def test_a_recovery_of_unknown_outcome_that_did_not_reissue_is_not_counted(
    api: FakeCS2CapAPI, client: AccountClient
) -> None:
    """Same, but the first recovery's reissue never reached the server: one recovery."""
    rotator, store = await _started(client, api)
    api.faults.drop_after_commit("reissue_key")
    api.faults.drop("reissue_key")  # the recovery's POST: closed before the handler ran
    api.faults.delay("get_key", 0.0, times=4)
    api.faults.fail("get_key", times=3)

    with pytest.raises(RotationError, match="recovering it with the recovery token failed"):
        await rotator.rotate_now()
    assert api.reissues == 1

    await rotator.check()

    record = await store.load()
    assert record is not None
    assert record.generation == 2
    assert api.reissues == 2
    assert rotator.recoveries == 1
