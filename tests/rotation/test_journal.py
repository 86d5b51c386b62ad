"""The journal's reading, by tables: every process state against every stored record.

No server, no store, no I/O: `next_step()`, `after_refusal()` and `adoption_is_news()`
are pure functions of frozen values, so each cell of a table is one call. The world is
fixed: this process holds key A at generation 3; a reissue from it made key U, which
only this process holds when it is "unsaved".
"""

from __future__ import annotations

import datetime as dt
import itertools

import pytest

from cs2cap_account import SecretKey
from cs2cap_account.rotation._journal import (
    Held,
    Next,
    Probe,
    Refusal,
    UnsavedKey,
    adoption_is_news,
    after_refusal,
    next_step,
)
from cs2cap_account.stores import KeyRecord, PendingRotation

AT = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


def key(name: str) -> SecretKey:
    """A root key named by one letter, with an id of its own (`key_<letter>`)."""
    return SecretKey(f"sk_live_root_{name * 24}0000")


def record(
    generation: int,
    name: str,
    *,
    journal_from: int | None = None,
    kept_aside: tuple[str, ...] = (),
) -> KeyRecord:
    """A stored record: key `name` at `generation`, a journal from `journal_from` if given."""
    pending = None
    if journal_from is not None:
        pending = PendingRotation(
            from_generation=journal_from, previous_key_id="key_A", reason="manual", started_at=AT
        )
    return KeyRecord(
        generation=generation,
        key=key(name),
        key_id=f"key_{name}",
        saved_at=AT,
        pending=pending,
        kept_aside=tuple(key(k) for k in kept_aside),
    )


SHAPES: dict[str, KeyRecord | None] = {
    "empty": None,
    "same": record(3, "A"),
    "same+aside": record(3, "A", kept_aside=("K",)),
    "newer": record(4, "B"),
    "reset": record(3, "C"),  # the same generation with another key: a store put back
    "journal-old": record(3, "A", journal_from=3),
    "journal-old+aside": record(3, "A", journal_from=3, kept_aside=("K",)),
    "journal-new": record(4, "B", journal_from=3),
    "journal-new+aside": record(4, "B", journal_from=3, kept_aside=("K",)),
    "own-save": record(4, "U", journal_from=3),  # the unsaved key's save had landed
}
JOURNALS = [name for name, shape in SHAPES.items() if shape is not None and shape.pending]

UNSAVED = UnsavedKey(record(4, "U", journal_from=3), follows_key_id="key_A")
HELD: dict[str, Held] = {
    "fresh": Held(),
    "holding": Held(generation=3, key_id="key_A", announced=3),
    "unsaved": Held(generation=3, key_id="key_A", announced=3, unsaved=UNSAVED),
    "halted": Held(generation=3, key_id="key_A", announced=3, halted=True),
}

# next_step(shape, held) before any probe.
STEPS = """
                    fresh             holding           unsaved           halted
empty               initialise        initialise        initialise        initialise
same                adopt             nothing-to-do     save-held         wait-halted
same+aside          adopt             nothing-to-do     save-held         wait-halted
newer               adopt             adopt             keep-held-aside   adopt
reset               adopt             adopt             keep-held-aside   adopt
journal-old         resume-and-probe  resume-and-probe  save-held         wait-halted
journal-old+aside   resume-and-probe  resume-and-probe  save-held         wait-halted
journal-new         complete          complete          keep-held-aside   complete
journal-new+aside   resume-and-probe  resume-and-probe  keep-held-aside   resume-and-probe
own-save            complete          complete          complete          complete
"""

# next_step(journal shape, held) given what the probe found; the same for fresh and holding.
AFTER_PROBE = """
                    stored-works   stored-revoked  kept-aside-works    no-answer
journal-old         close-journal  recover         recover             nothing-to-do
journal-old+aside   close-journal  recover         promote-kept-aside  nothing-to-do
journal-new         complete       complete        complete            complete
journal-new+aside   complete       complete        promote-kept-aside  complete
own-save            complete       complete        complete            complete
"""

# after_refusal(shape, sends_stored_key=...) when no rotation is in flight, by probe.
REFUSALS = """
                    not-probed    stored-works  stored-revoked  kept-aside-works    no-answer
empty               let-it-stand  let-it-stand  let-it-stand    let-it-stand        let-it-stand
sent                let-it-stand  let-it-stand  let-it-stand    let-it-stand        let-it-stand
sent+aside          probe         let-it-stand  let-it-stand    promote-kept-aside  let-it-stand
sent+journal        let-it-stand  let-it-stand  let-it-stand    let-it-stand        let-it-stand
another             offer-stored  offer-stored  offer-stored    offer-stored        offer-stored
another+aside       offer-stored  offer-stored  offer-stored    offer-stored        offer-stored
"""
REFUSAL_SHAPES: dict[str, tuple[KeyRecord | None, bool]] = {
    "empty": (None, False),
    "sent": (record(3, "A"), True),
    "sent+aside": (record(3, "A", kept_aside=("K",)), True),
    "sent+journal": (record(3, "A", journal_from=3), True),
    "another": (record(4, "B"), False),
    "another+aside": (record(4, "B", kept_aside=("K",)), False),
}


def grid(text: str) -> dict[tuple[str, str], str]:
    """A table as {(row, column): cell}."""
    header, *rows = (line.split() for line in text.strip().splitlines())
    return {
        (row[0], column): cell for row in rows for column, cell in zip(header, row[1:], strict=True)
    }


def cells(text: str) -> list[tuple[str, str, str]]:
    """A table's cells as (row, column, cell), for parametrize."""
    return [(row, column, cell) for (row, column), cell in grid(text).items()]


def test_the_tables_cover_every_state_shape_probe_and_answer() -> None:
    """Each table has a cell for every shape and state (or probe) it concerns, and each
    step the functions can answer appears somewhere: nothing is left out.
    """
    steps, after, refusals = grid(STEPS), grid(AFTER_PROBE), grid(REFUSALS)
    assert set(steps) == set(itertools.product(SHAPES, HELD))
    probed = [p.value for p in Probe if p is not Probe.NOT_PROBED]
    assert set(after) == set(itertools.product(JOURNALS, probed))
    assert set(refusals) == set(itertools.product(REFUSAL_SHAPES, [p.value for p in Probe]))
    assert {*steps.values(), *after.values()} == {n.value for n in Next}
    assert {*refusals.values(), Refusal.AWAIT_ROTATION.value} == {r.value for r in Refusal}


@pytest.mark.parametrize(("shape", "state", "expected"), cells(STEPS))
def test_next_step_before_a_probe(shape: str, state: str, expected: str) -> None:
    """What a look at the store calls for, for each process state and stored record."""
    assert next_step(SHAPES[shape], HELD[state]) is Next(expected)


# Where the answer before a probe finishes a journal, what the probe finds may change it.
FINISHING = {Next.RESUME_AND_PROBE.value, Next.COMPLETE.value}
PROBE_DECIDES = [
    (shape, state, probe, expected)
    for (shape, state), before in grid(STEPS).items()
    if before in FINISHING
    for (row, probe), expected in grid(AFTER_PROBE).items()
    if row == shape
]
PROBE_IRRELEVANT = [cell for cell in cells(STEPS) if cell[2] not in FINISHING]


@pytest.mark.parametrize(("shape", "state", "probe", "expected"), PROBE_DECIDES)
def test_next_step_after_a_probe(shape: str, state: str, probe: str, expected: str) -> None:
    """An open journal, once the stored key (and the kept-aside ones) were probed: a key
    that works means nothing was reissued; a revoked one, that the new key was lost,
    unless a kept-aside key is the live one. A saved new key is completed whatever the
    probe found (verifying it is the completion's first step).
    """
    assert next_step(SHAPES[shape], HELD[state], Probe(probe)) is Next(expected)


@pytest.mark.parametrize("probe", [p for p in Probe if p is not Probe.NOT_PROBED])
@pytest.mark.parametrize(("shape", "state", "expected"), PROBE_IRRELEVANT)
def test_a_probe_matters_only_to_a_journal_being_finished(
    shape: str, state: str, expected: str, probe: Probe
) -> None:
    """Without a journal to finish here (none, or the process's own state decides: a halt,
    an unsaved key), a probe's result changes nothing: the answer is the one before it.
    """
    assert next_step(SHAPES[shape], HELD[state], probe) is Next(expected)


def test_an_unsaved_key_is_saved_only_over_the_record_it_follows() -> None:
    """The store at the generation the key follows, but with another key there (a store
    put back, then rotated by hand): the key is kept aside, not saved over it.
    """
    elsewhere = record(3, "C", journal_from=3)
    assert next_step(elsewhere, HELD["unsaved"]) is Next.KEEP_HELD_ASIDE
    assert next_step(record(3, "A", journal_from=3), HELD["unsaved"]) is Next.SAVE_HELD


def test_a_halt_is_lifted_by_any_other_key_in_the_store() -> None:
    """Halted after a lost key: a new key put in the store ends the wait, whatever its
    generation, even the same one (a key written by hand over a reset store).
    """
    for stored in (record(3, "C"), record(1, "C"), record(9, "C")):
        assert next_step(stored, HELD["halted"]) is Next.ADOPT
    assert next_step(record(3, "A"), HELD["halted"]) is Next.WAIT_HALTED


@pytest.mark.parametrize(("shape", "probe", "expected"), cells(REFUSALS))
def test_after_refusal(shape: str, probe: str, expected: str) -> None:
    """A 401 on an ordinary call, with no rotation in flight: another stored key is sent
    instead; the stored key refused can only give way to a kept-aside key that works.
    """
    stored, sends = REFUSAL_SHAPES[shape]
    verdict = after_refusal(stored, sends_stored_key=sends, rotating=False, probe=Probe(probe))
    assert verdict is Refusal(expected)


@pytest.mark.parametrize("probe", list(Probe))
@pytest.mark.parametrize("shape", list(REFUSAL_SHAPES))
def test_a_refusal_during_a_rotation_waits_for_it(shape: str, probe: Probe) -> None:
    """While this process rotates, a 401 is most likely its own reissue landing: whatever
    the store holds, the call waits for the rotation to switch the client.
    """
    stored, sends = REFUSAL_SHAPES[shape]
    verdict = after_refusal(stored, sends_stored_key=sends, rotating=True, probe=probe)
    assert verdict is Refusal.AWAIT_ROTATION


@pytest.mark.parametrize(
    ("state", "generation", "sends", "news"),
    [
        ("fresh", 3, True, False),  # the key the process started with
        ("fresh", 3, False, True),  # a process started with an old key learns the new one
        ("holding", 4, False, True),
        ("holding", 4, True, True),  # the client already sends it (a reload after a 401)
        ("holding", 3, False, False),  # announced already: a reset store's same generation
        ("holding", 2, False, False),
    ],
)
def test_adoption_is_news_once_per_generation(
    state: str, generation: int, sends: bool, news: bool
) -> None:
    """An adopted key is announced unless it is the one the process started with, or its
    generation was announced here already.
    """
    stored = record(generation, "B")
    assert adoption_is_news(stored, HELD[state], sends_stored_key=sends) is news
