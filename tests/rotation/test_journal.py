"""The journal's reading, by tables: every process state against every stored record.

No server, no store, no I/O: `next_step()`, `after_refusal()` and `adoption_is_news()`
are pure functions of frozen values, so each cell of a table is one call. The world is
fixed: this process holds key A at generation 3 of store lineage L; a reissue from it
made key U, which only this process holds when it is "unsaved". Lineage M is the store
after a reset and a re-initialisation by another process.
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
    lineage: str = "L",
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
        lineage=lineage,
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
    # After a reset, re-initialised by another process (lineage M):
    "other-lineage": record(3, "A", lineage="M"),  # the same generation and key: a copy
    "reinit-old": record(1, "A", lineage="M"),  # with the key rotated away from
    "reinit-newer": record(2, "B", lineage="M"),  # and rotated on since
    "reinit-own": record(1, "U", lineage="M"),  # with the unsaved key, written back
    "reinit-journal": record(3, "A", journal_from=3, lineage="M"),  # a journal, not ours
}
JOURNALS = [name for name, shape in SHAPES.items() if shape is not None and shape.pending]

UNSAVED = UnsavedKey(record(4, "U", journal_from=3), follows_key_id="key_A")
SEEN = frozenset({"key_A"})
HELD: dict[str, Held] = {
    "fresh": Held(),
    "holding": Held(generation=3, key_id="key_A", lineage="L", announced=SEEN),
    "unannounced": Held(generation=3, key_id="key_A", lineage="L"),
    "unsaved": Held(generation=3, key_id="key_A", lineage="L", announced=SEEN, unsaved=UNSAVED),
    "halted": Held(generation=3, key_id="key_A", lineage="L", announced=SEEN, halted=True),
}

# next_step(shape, held) before any probe.
STEPS = """
                    fresh             holding           unsaved           halted
empty               initialise        initialise        probe-held        initialise
same                adopt             nothing-to-do     save-held         wait-halted
same+aside          adopt             nothing-to-do     save-held         wait-halted
newer               adopt             adopt             probe-held        adopt
reset               adopt             adopt             probe-held        adopt
journal-old         resume-and-probe  resume-and-probe  save-held         wait-halted
journal-old+aside   resume-and-probe  resume-and-probe  save-held         wait-halted
journal-new         complete          complete          probe-held        complete
journal-new+aside   resume-and-probe  resume-and-probe  probe-held        resume-and-probe
own-save            complete          complete          complete          complete
other-lineage       adopt             adopt             probe-held        wait-halted
reinit-old          adopt             adopt             probe-held        wait-halted
reinit-newer        adopt             adopt             probe-held        adopt
reinit-own          adopt             adopt             adopt             adopt
reinit-journal      resume-and-probe  resume-and-probe  probe-held        wait-halted
"""
# The same for a process that holds A, durable in the store, but never announced it (its
# rotation was stopped after the save, and another process finished it).
STEPS_UNANNOUNCED = """
                    unannounced
empty               initialise
same                adopt
same+aside          adopt
newer               adopt
reset               adopt
journal-old         resume-and-probe
journal-old+aside   resume-and-probe
journal-new         complete
journal-new+aside   resume-and-probe
own-save            complete
other-lineage       adopt
reinit-old          adopt
reinit-newer        adopt
reinit-own          adopt
reinit-journal      resume-and-probe
"""

# next_step(journal shape, held) given what the probe of the stored key found; the same
# for fresh, holding and unannounced.
AFTER_PROBE = """
                    stored-works   stored-revoked  kept-aside-works    no-answer
journal-old         close-journal  recover         recover             nothing-to-do
journal-old+aside   close-journal  recover         promote-kept-aside  nothing-to-do
journal-new         complete       complete        complete            complete
journal-new+aside   complete       complete        promote-kept-aside  complete
own-save            complete       complete        complete            complete
reinit-journal      close-journal  recover         recover             nothing-to-do
"""

# next_step(shape, unsaved) given what the probe of the unsaved key U found: the live key
# is saved over whatever is stored (written back into an empty store); a revoked one is
# kept aside, never dropped (in an empty store, the refused key of a reset: see below).
AFTER_HELD_PROBE = """
                    held-works       held-revoked        no-answer
empty               write-back-held  recover-into-empty  nothing-to-do
newer               save-held        keep-held-aside     nothing-to-do
reset               save-held        keep-held-aside     nothing-to-do
journal-new         save-held        keep-held-aside     nothing-to-do
journal-new+aside   save-held        keep-held-aside     nothing-to-do
other-lineage       save-held        keep-held-aside     nothing-to-do
reinit-old          save-held        keep-held-aside     nothing-to-do
reinit-newer        save-held        keep-held-aside     nothing-to-do
reinit-journal      save-held        keep-held-aside     nothing-to-do
"""

# next_step(shape, state, stored-revoked) for a record without a journal whose key, the one
# this process holds and sends, a check found refused: a reissue no rotation of this store
# made revoked it. Recovered if the key in force was never used (the step decides that).
AFTER_REVOKED = """
                    holding          unannounced
same                recover-revoked  recover-revoked
same+aside          recover-revoked  recover-revoked
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


def all_steps() -> dict[tuple[str, str], str]:
    """Both tables of `next_step()` before a probe, as one grid."""
    return {**grid(STEPS), **grid(STEPS_UNANNOUNCED)}


def cells(text: str) -> list[tuple[str, str, str]]:
    """A table's cells as (row, column, cell), for parametrize."""
    return [(row, column, cell) for (row, column), cell in grid(text).items()]


STORED_PROBES = [Probe.STORED_WORKS, Probe.STORED_REVOKED, Probe.KEPT_ASIDE_WORKS, Probe.NO_ANSWER]
HELD_PROBES = [Probe.HELD_WORKS, Probe.HELD_REVOKED, Probe.NO_ANSWER]


def test_the_tables_cover_every_state_shape_probe_and_answer() -> None:
    """Each table has a cell for every shape and state (or probe) it concerns, and each
    step the functions can answer appears somewhere: nothing is left out.
    """
    steps, after, refusals = all_steps(), grid(AFTER_PROBE), grid(REFUSALS)
    held_after = grid(AFTER_HELD_PROBE)
    assert set(steps) == set(itertools.product(SHAPES, HELD))
    assert set(after) == set(itertools.product(JOURNALS, [p.value for p in STORED_PROBES]))
    probed_held = [shape for (shape, state), cell in steps.items() if cell == "probe-held"]
    assert set(held_after) == set(itertools.product(probed_held, [p.value for p in HELD_PROBES]))
    refusal_probes = [Probe.NOT_PROBED, *STORED_PROBES]
    assert set(refusals) == set(
        itertools.product(REFUSAL_SHAPES, [p.value for p in refusal_probes])
    )
    answers = {*steps.values(), *after.values(), *held_after.values()}
    answers |= set(grid(AFTER_REVOKED).values())
    assert answers == {n.value for n in Next}
    assert {*refusals.values(), Refusal.AWAIT_ROTATION.value} == {r.value for r in Refusal}


@pytest.mark.parametrize(("shape", "state", "expected"), cells(STEPS) + cells(STEPS_UNANNOUNCED))
def test_next_step_before_a_probe(shape: str, state: str, expected: str) -> None:
    """What a look at the store calls for, for each process state and stored record."""
    assert next_step(SHAPES[shape], HELD[state]) is Next(expected)


# Where the answer before a probe finishes a journal, what the probe finds may change it.
FINISHING = {Next.RESUME_AND_PROBE.value, Next.COMPLETE.value}
PROBE_DECIDES = [
    (shape, state, probe, expected)
    for (shape, state), before in all_steps().items()
    if before in FINISHING
    for (row, probe), expected in grid(AFTER_PROBE).items()
    if row == shape
]
HELD_PROBE_DECIDES = [
    (shape, probe, expected) for (shape, probe), expected in grid(AFTER_HELD_PROBE).items()
]
PROBE_IRRELEVANT = [
    (shape, state, expected, probe)
    for shape, state, expected in cells(STEPS) + cells(STEPS_UNANNOUNCED)
    if expected not in {*FINISHING, Next.PROBE_HELD.value} and shape != "empty"
    for probe in Probe
    if probe is not Probe.NOT_PROBED
    if (probe is not Probe.STORED_REVOKED or (shape, state) not in grid(AFTER_REVOKED))
]


@pytest.mark.parametrize(("shape", "state", "probe", "expected"), PROBE_DECIDES)
def test_next_step_after_a_probe(shape: str, state: str, probe: str, expected: str) -> None:
    """An open journal, once the stored key (and the kept-aside ones) were probed: a key
    that works means nothing was reissued; a revoked one, that the new key was lost,
    unless a kept-aside key is the live one. A saved new key is completed whatever the
    probe found (verifying it is the completion's first step).
    """
    assert next_step(SHAPES[shape], HELD[state], Probe(probe)) is Next(expected)


@pytest.mark.parametrize("probe", [Probe.HELD_WORKS, Probe.HELD_REVOKED])
@pytest.mark.parametrize(("shape", "state"), [c[:2] for c in PROBE_DECIDES[::4]])
def test_a_probe_of_the_held_key_says_nothing_of_a_journal(
    shape: str, state: str, probe: Probe
) -> None:
    """Finishing a journal depends on the stored key alone: what a probe of the key held
    here found leaves the answer as it was before any probe.
    """
    before = next_step(SHAPES[shape], HELD[state])
    assert next_step(SHAPES[shape], HELD[state], probe) is before


@pytest.mark.parametrize(("shape", "probe", "expected"), HELD_PROBE_DECIDES)
def test_an_unsaved_key_after_its_probe(shape: str, probe: str, expected: str) -> None:
    """The store does not hold what the unsaved key follows (it moved on, or was reset
    and re-initialised, whatever the generation numbers): the unsaved key that still
    works is the live one and is saved over the stored record; one that is refused was
    revoked by a later reissue and is kept aside; no answer keeps it held for next time.
    """
    assert next_step(SHAPES[shape], HELD["unsaved"], Probe(probe)) is Next(expected)


@pytest.mark.parametrize(("shape", "state", "expected", "probe"), PROBE_IRRELEVANT)
def test_a_probe_matters_only_to_a_journal_being_finished(
    shape: str, state: str, expected: str, probe: Probe
) -> None:
    """Without a journal to finish here (none, or the process's own state decides: a halt,
    an unsaved key), a probe's result changes nothing: the answer is the one before it,
    but for the stored key held here found refused (the table below).
    """
    assert next_step(SHAPES[shape], HELD[state], probe) is Next(expected)


@pytest.mark.parametrize(("shape", "state", "expected"), cells(AFTER_REVOKED))
def test_a_stored_key_held_here_found_refused(shape: str, state: str, expected: str) -> None:
    """The stored key, the one this process holds, refused with no journal open: a
    reissue no rotation of this store made revoked it, and recovering it is the step
    (whether the key held here was announced yet or not). A halted process, one with an
    unsaved key, or one that holds another key answers as before (the table above).
    """
    assert next_step(SHAPES[shape], HELD[state], Probe.STORED_REVOKED) is Next(expected)


@pytest.mark.parametrize(
    ("state", "probe", "expected"),
    [
        ("fresh", Probe.NOT_PROBED, Next.INITIALISE),
        ("fresh", Probe.HELD_REVOKED, Next.INITIALISE),  # a first use: the 401 stands
        ("holding", Probe.NOT_PROBED, Next.INITIALISE),  # a reset: write the key back
        ("holding", Probe.HELD_WORKS, Next.INITIALISE),
        ("holding", Probe.HELD_REVOKED, Next.RECOVER_INTO_EMPTY),
        ("halted", Probe.HELD_REVOKED, Next.RECOVER_INTO_EMPTY),
        ("unsaved", Probe.NOT_PROBED, Next.PROBE_HELD),
        ("unsaved", Probe.HELD_WORKS, Next.WRITE_BACK_HELD),
        ("unsaved", Probe.HELD_REVOKED, Next.RECOVER_INTO_EMPTY),  # revoked since
    ],
)
def test_an_empty_store(state: str, probe: Probe, expected: Next) -> None:
    """An empty store is initialised with the key held here (which the initialisation
    proves works); an unsaved key is written back into it, journal and all; a process
    that held a stored key and now finds its key refused lost the journal with the reset,
    and only the recovery token can mend it.
    """
    assert next_step(None, HELD[state], probe) is expected


def test_an_unsaved_key_is_saved_only_over_the_record_it_follows() -> None:
    """The store at the generation the key follows, but with another key there, or the
    same key in another lineage (a store reset, then written again): the unsaved key is
    not saved over it blindly; whether it still works decides.
    """
    elsewhere = record(3, "C", journal_from=3)
    assert next_step(elsewhere, HELD["unsaved"]) is Next.PROBE_HELD
    reset = record(3, "A", journal_from=3, lineage="M")
    assert next_step(reset, HELD["unsaved"]) is Next.PROBE_HELD
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
    ("state", "name", "generation", "sends", "news"),
    [
        ("fresh", "B", 3, True, False),  # the key the process started with
        ("fresh", "B", 3, False, True),  # a process started with an old key learns the new one
        ("holding", "B", 4, False, True),
        ("holding", "B", 4, True, True),  # the client already sends it (a reload after a 401)
        ("holding", "B", 3, False, True),  # a reset store's same generation, another key
        ("holding", "B", 1, False, True),  # a reset store, rotated since
        ("holding", "A", 4, False, False),  # announced already, whatever its generation
        ("unannounced", "A", 3, True, True),  # held, never announced: a stopped rotation
    ],
)
def test_adoption_is_news_once_per_key(
    state: str, name: str, generation: int, sends: bool, news: bool
) -> None:
    """An adopted key is announced unless it is the one the process started with, or it
    was announced here already: by key id, never by generation number.
    """
    stored = record(generation, name)
    assert adoption_is_news(stored, HELD[state], sends_stored_key=sends) is news
