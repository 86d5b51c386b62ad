"""A child key's journal, read by tables: `next_child_step()`, `news()`, `managed()`.

Pure functions of frozen records: each cell is one call. The world: the root key R at
generation 3; the child "bot" was B (id `child_B`) and, once reissued, is N.
"""

from __future__ import annotations

import datetime as dt

import pytest

from cs2cap_account import SecretKey
from cs2cap_account._reissue import Verdict
from cs2cap_account.rotation._child_journal import ChildNext, managed, news, next_child_step
from cs2cap_account.stores import KeyRecord
from cs2cap_account.stores._record import PendingChildRotation, StoredSubKey

AT = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


def child(letter: str) -> StoredSubKey:
    """A stored child key named by one letter (id `child_<letter>`)."""
    return StoredSubKey(key=SecretKey(f"sk_live_child_{letter * 24}"), id=f"child_{letter}")


def record(stored: str | None, *, journal: bool) -> KeyRecord:
    """The root record, "bot" stored as `stored` (or not at all), its journal open or not."""
    pending = PendingChildRotation(
        previous_key_id="child_B", previous_created_at=AT, reason="max_age", started_at=AT
    )
    return KeyRecord(
        generation=3,
        key=SecretKey("sk_live_root_" + "r" * 24),
        key_id="root_R",
        saved_at=AT,
        sub_keys={} if stored is None else {"bot": child(stored)},
        child_rotations={"bot": pending} if journal else {},
    )


PROBES = [None, Verdict.RETRY, Verdict.LOST, Verdict.UNKNOWN, Verdict.REPLACE_LOST]

# (what "bot" is stored as, journal open) -> the step for each probe, in PROBES' order.
TABLE = {
    ("B", False): [ChildNext.NOTHING_TO_DO] * 5,
    ("N", False): [ChildNext.NOTHING_TO_DO] * 5,
    (None, False): [ChildNext.NOTHING_TO_DO] * 5,
    # Saved: the new child is stored, whatever a probe of the old one would say.
    ("N", True): [ChildNext.COMPLETE] * 5,
    # Not saved (the old child stored, or none: a child rotated into the store).
    ("B", True): [
        ChildNext.PROBE_OLD,
        ChildNext.CLOSE_JOURNAL,
        ChildNext.RECOVER,
        ChildNext.WAIT,
        ChildNext.WAIT,  # a root-only verdict concludes nothing of a child
    ],
    (None, True): [
        ChildNext.PROBE_OLD,
        ChildNext.CLOSE_JOURNAL,
        ChildNext.RECOVER,
        ChildNext.WAIT,
        ChildNext.WAIT,
    ],
}


@pytest.mark.parametrize(("stored", "journal"), list(TABLE))
@pytest.mark.parametrize("probe", PROBES, ids=lambda p: "not-probed" if p is None else p.value)
def test_the_next_step_of_a_childs_journal(
    stored: str | None, journal: bool, probe: Verdict | None
) -> None:
    """Each (stored child, journal, probe) cell gives the step the table says."""
    expected = TABLE[stored, journal][PROBES.index(probe)]
    assert next_child_step(record(stored, journal=journal), "bot", probe) is expected


def test_every_step_appears_in_the_table() -> None:
    """The table reaches every `ChildNext` value: none is dead code."""
    assert {step for row in TABLE.values() for step in row} == set(ChildNext)


def test_another_childs_journal_says_nothing_of_this_one() -> None:
    """A journal is per name: "bot"'s open journal leaves "ci" with nothing to do."""
    assert next_child_step(record("B", journal=True), "ci") is ChildNext.NOTHING_TO_DO


@pytest.mark.parametrize(
    ("stored", "journal", "known", "expected"),
    [
        ("N", False, {"bot": child("B")}, ("bot",)),  # rotated elsewhere: news
        ("N", False, {"bot": child("N")}, ()),  # known already
        ("N", False, {}, ("bot",)),  # a child first stored elsewhere
        ("N", True, {"bot": child("B")}, ()),  # saved, not yet verified: not yet
        ("B", True, {"bot": child("B")}, ()),
        (None, False, {"bot": child("B")}, ()),  # gone from the store: nothing to tell
    ],
)
def test_news_is_a_stored_child_with_its_journal_closed_not_known_here(
    stored: str | None, journal: bool, known: dict[str, StoredSubKey], expected: tuple[str, ...]
) -> None:
    """`news()` names the children a process learns of by reading the store."""
    assert news(record(stored, journal=journal), known) == expected


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        (None, ("a", "b")),
        (("b",), ("b",)),
        (("c", "b"), ("b", "c")),  # stored ones first, in the store's order
        ((), ()),
    ],
)
def test_managed_children(names: tuple[str, ...] | None, expected: tuple[str, ...]) -> None:
    """`managed()`: the named children, or every stored one when no names are given."""
    stored = KeyRecord(
        generation=1,
        key=SecretKey("sk_live_root_" + "r" * 24),
        key_id="root_R",
        saved_at=AT,
        sub_keys={"a": child("A"), "b": child("B")},
    )
    assert managed(stored, names) == expected
