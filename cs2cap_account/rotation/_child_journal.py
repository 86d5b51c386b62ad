"""A child key's journal, read: what the stored record calls for next for one child.

Pure: no I/O, no clock, no client. A child key is rotated on its own through
`POST /account/sub-keys/{id}/reissue`, which leaves the root key and the other children
alone; like the root's, each child's rotation writes its journal
(`KeyRecord.child_rotations[name]`) before the reissue, so a crash at any step is
finished by the next rotator to look:

| the child's journal              | what the old child is (probe) | step            |
|----------------------------------|-------------------------------|-----------------|
| none                             |                               | `NOTHING_TO_DO` |
| open, another child stored       |                               | `COMPLETE`      |
| open, the old child still stored | not asked yet                 | `PROBE_OLD`     |
| open, the old child still stored | still active (`RETRY`)        | `CLOSE_JOURNAL` |
| open, the old child still stored | revoked or gone (`LOST`)      | `RECOVER`       |
| open, the old child still stored | no answer (`UNKNOWN`)         | `WAIT`          |

`COMPLETE`: the new child is saved; verify it, announce it, close the journal.
`CLOSE_JOURNAL`: the reissue never happened; the child is still due, and rotated again.
`RECOVER`: the reissue happened and its answer, the only copy of the key, was lost:
the root key recovers it (`client.sub_keys.recover`), reissuing the child it made.
`WAIT`: the journal stays open for the next look. The probe is read by
`_reissue.child_verdict`, as the client reads one after an ambiguous child reissue.

`news()` tells which stored children a process learns of by reading the store: a child
stored under a name with no journal open whose id this process does not know.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping

from cs2cap_account._reissue import Verdict
from cs2cap_account.stores._record import KeyRecord, StoredSubKey

__all__ = ["ChildNext", "managed", "news", "next_child_step"]


class ChildNext(enum.Enum):
    """The next step for one child's journal."""

    NOTHING_TO_DO = "nothing-to-do"
    """No rotation of this child is in progress."""
    PROBE_OLD = "probe-old"
    """The reissue may or may not have happened: ask the server about the old child."""
    CLOSE_JOURNAL = "close-journal"
    """The old child is still active, so its reissue never happened: close the journal."""
    RECOVER = "recover"
    """The old child is revoked and its successor's key was lost: recover it by name."""
    COMPLETE = "complete"
    """The new child is saved: verify it with its own key, announce, close the journal."""
    WAIT = "wait"
    """The probe got no answer: the journal stays open for the next look."""


_AFTER_PROBE = {
    None: ChildNext.PROBE_OLD,
    Verdict.RETRY: ChildNext.CLOSE_JOURNAL,
    Verdict.LOST: ChildNext.RECOVER,
    Verdict.UNKNOWN: ChildNext.WAIT,
}


def next_child_step(record: KeyRecord, name: str, probe: Verdict | None = None) -> ChildNext:
    """The step the journal of the child `name` calls for (see the module's table).

    `probe` is `child_verdict()` of a probe of the old child, once one was made.
    """
    pending = record.child_rotations.get(name)
    if pending is None:
        return ChildNext.NOTHING_TO_DO
    stored = record.sub_keys.get(name)
    if stored is not None and stored.id != pending.previous_key_id:
        return ChildNext.COMPLETE
    return _AFTER_PROBE.get(probe, ChildNext.WAIT)


def news(record: KeyRecord, known: Mapping[str, StoredSubKey]) -> tuple[str, ...]:
    """The children stored in `record`, journal closed, that are not the ones `known`.

    A child whose rotation is still open is not news yet: its rotator announces it once
    it is verified, and the others when its journal closes.
    """
    return tuple(
        name
        for name, entry in record.sub_keys.items()
        if name not in record.child_rotations and (name not in known or known[name].id != entry.id)
    )


def managed(record: KeyRecord, names: Iterable[str] | None) -> tuple[str, ...]:
    """The children a rotator rotates: `names`, or else every child the store records.

    In the store's order, then the named ones it does not hold yet (in `names`' order).
    """
    if names is None:
        return tuple(record.sub_keys)
    wanted = tuple(dict.fromkeys(names))
    return (
        *(name for name in record.sub_keys if name in wanted),
        *(name for name in wanted if name not in record.sub_keys),
    )
