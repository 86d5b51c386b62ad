"""A record's lineage: made when a store is initialised, carried by every successor."""

from __future__ import annotations

import json

from cs2cap_account.stores._record import dump_record, load_record, successor

from ._support import ROOT_2, ROOT_3, T0, simple_record


def test_an_initialised_store_gets_a_new_random_lineage_each_time() -> None:
    """Generation 1 of an empty store carries a fresh lineage: two initialisations (a
    store, and the same store after a reset) never share one.
    """
    first = successor(None, ROOT_2, "key_a", at=T0)
    again = successor(None, ROOT_2, "key_a", at=T0)
    assert first.generation == again.generation == 1
    assert first.lineage and again.lineage
    assert first.lineage != again.lineage


def test_every_successor_carries_its_record_s_lineage() -> None:
    """A rotation keeps the lineage of the record it follows."""
    base = successor(None, ROOT_2, "key_a", at=T0)
    after = successor(successor(base, ROOT_3, "key_b", at=T0), ROOT_2, "key_c", at=T0)
    assert (after.generation, after.lineage) == (3, base.lineage)


def test_a_record_written_before_lineages_reads_with_an_empty_one() -> None:
    """A record saved before the field existed loads with lineage "" and keeps it."""
    raw = json.loads(dump_record(simple_record(4)))
    del raw["lineage"]
    old = load_record(json.dumps(raw), source="the test record")
    assert old.lineage == ""
    assert successor(old, ROOT_3, "key_n", at=T0).lineage == ""
