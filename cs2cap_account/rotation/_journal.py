"""The journal, read: what the stored record and this process's holdings call for next.

Pure: no I/O, no clock, no client. `next_step()` answers for a look at the store (a
check, a rotation about to start, a store change), `after_refusal()` for a 401 on an
ordinary call; each returns a named step that the rotator's I/O then carries out. Where
the answer depends on whether a key still authenticates, the step is to probe it, and
the function is asked again with what the probe found (`Probe`).

What the store can hold, and what it means:

- nothing: the first use; the client's key becomes generation 1 (`INITIALISE`);
- a record without a journal: either the key this process holds (`NOTHING_TO_DO`) or
  another one, saved by another process or put there by hand (`ADOPT`);
- a journal at the old generation (`pending.from_generation == generation`): the reissue
  may or may not have happened. The stored key is probed: it works, so nothing was
  reissued (`CLOSE_JOURNAL`); it is revoked, so the new key was lost (`RECOVER`);
- a journal at the new generation: the new key is saved, steps 7-9 are owed (`COMPLETE`);
- a record without a journal whose key, the one held here, a check found refused: a
  reissue no rotation of this store made revoked it (a session-JWT reissue whose first
  attempt landed after its retry, or one made by hand). If the key in force never
  authenticated a call, it is lost: recovered with the token (`RECOVER_REVOKED`);
- kept-aside keys (reissued, then fenced off): when the stored key is revoked and one of
  them works, it is the live key, promoted to the next generation (`PROMOTE_KEPT_ASIDE`).

What this process can hold besides its key: a reissued key that could not be saved,
and a halt after a key was lost with no way to recover it (`WAIT_HALTED` until another
key appears in the store). An unsaved key is never dropped:

- the store still holds the record it follows (same lineage, same key id, one generation
  before): it is saved over it (`SAVE_HELD`);
- the store is empty (reset): if it still works (`PROBE_HELD`), it is written back, as
  generation 1 of a new lineage, with its rotation's journal, so the rest of the
  rotation follows (`WRITE_BACK_HELD`); if it is refused, as for any refused key in an
  emptied store (below);
- the store moved on, or was reset and written by another process: whether the held key
  still works decides (`PROBE_HELD`). It works: it is the live key, saved over whatever
  is stored (`SAVE_HELD`); it is refused: a later reissue revoked it, and it is kept
  aside in the store (`KEEP_HELD_ASIDE`) while the stored record is read as usual.

Keys are told apart by their id and the store's lineage (a random id written when a
store is initialised, carried by every successor), never by a generation number alone:
a store reset, put back to an earlier state, or written by hand, can repeat a generation
with another key. An empty store a process already held a key from is a reset store: it
writes its key back (`INITIALISE`, which proves the key works first); if that key is
refused, the journal that would say so went with the reset, and only the recovery
token can mend it (`RECOVER_INTO_EMPTY`).

Callbacks fire once per key id in a process: for every key it comes to hold from the
store (rotated here, adopted, or finished after an interruption), never for the key it
started with, never twice (`adoption_is_news`). A process that holds a durable key it
never announced (its rotation stopped after the save, and another process finished it)
announces it at its next look (`ADOPT`).
"""

from __future__ import annotations

import enum

import attrs

from cs2cap_account.stores._record import KeyRecord

__all__ = ["Held", "Next", "Probe", "Refusal", "UnsavedKey", "after_refusal", "next_step"]


class Next(enum.Enum):
    """The next step after a look at the store."""

    INITIALISE = "initialise"
    """The store is empty: save the client's key as generation 1."""
    ADOPT = "adopt"
    """The store holds another key, and no journal: hold it (announced if new here)."""
    RESUME_AND_PROBE = "resume-and-probe"
    """A journal is open and what it needs depends on the stored key: probe it."""
    PROBE_HELD = "probe-held"
    """The store does not hold what an unsaved key follows: probe the unsaved key."""
    WRITE_BACK_HELD = "write-back-held"
    """The store is empty and an unsaved key held here works: write it back, journal too."""
    RECOVER_INTO_EMPTY = "recover-into-empty"
    """The store is empty and the key held here is refused: recover with the token."""
    COMPLETE = "complete"
    """The journal's new key is saved: hold it, then verify, children, announce (7-9)."""
    SAVE_HELD = "save-held"
    """This process holds a reissued key the store lacks, and it is the live one: save it
    over the stored record, then complete."""
    KEEP_HELD_ASIDE = "keep-held-aside"
    """An unsaved key held here was revoked by a later reissue: keep it aside, never drop it."""
    CLOSE_JOURNAL = "close-journal"
    """The journal's reissue never happened (the stored key works): close the journal."""
    RECOVER = "recover"
    """The journal's reissue happened and its key was lost: reissue with the recovery token."""
    PROMOTE_KEPT_ASIDE = "promote-kept-aside"
    """The stored key is revoked and a kept-aside key works: save it as the next generation."""
    RECOVER_REVOKED = "recover-revoked"
    """The stored key, held here, is refused and no journal says why: recover it if lost."""
    WAIT_HALTED = "wait-halted"
    """The key held here was lost and cannot be recovered: wait for a new key in the store."""
    NOTHING_TO_DO = "nothing-to-do"
    """The store holds the key held here, with nothing left to finish."""


class Refusal(enum.Enum):
    """What to do after a 401 on an ordinary call. Never a reissue."""

    AWAIT_ROTATION = "await-rotation"
    """This process is rotating: wait until it switches the client, then send again."""
    OFFER_STORED = "offer-stored"
    """The store holds another key: send the call again with it, and catch up."""
    PROBE = "probe"
    """The refused key is the stored one and keys are kept aside: probe them."""
    PROMOTE_KEPT_ASIDE = "promote-kept-aside"
    """A kept-aside key works: promote it, and send the call again with it."""
    LET_IT_STAND = "let-it-stand"
    """Nothing better is known: the 401 stands."""


class Probe(enum.Enum):
    """What is known of the stored key (and the kept-aside ones) after asking the server."""

    NOT_PROBED = "not-probed"
    STORED_WORKS = "stored-works"
    STORED_REVOKED = "stored-revoked"
    """The stored key is refused, and no kept-aside key works (or none is kept)."""
    KEPT_ASIDE_WORKS = "kept-aside-works"
    """The stored key is refused, and a kept-aside key works."""
    NO_ANSWER = "no-answer"
    """The probe got no answer (network, 5xx): nothing can be concluded from it."""
    HELD_WORKS = "held-works"
    """The key held here (unsaved, or the client's) authenticates."""
    HELD_REVOKED = "held-revoked"
    """The key held here (unsaved, or the client's) is refused."""


@attrs.frozen
class UnsavedKey:
    """A reissued key held only in this process: the record to save, and whom it follows.

    `record` is the successor as it is to be stored (in the lineage of the record it was
    reissued from, with that rotation's journal); `follows_key_id` is the id of the key
    in the record it was reissued from, which the store must still hold, in the same
    lineage, for the successor to be saved over it without asking the server.
    """

    record: KeyRecord
    follows_key_id: str


@attrs.frozen
class Held:
    """What this process holds: the stored generation, id and lineage of its key, and more.

    `generation` is 0 and `key_id` and `lineage` None before the process first looked at
    the store. `announced` is the set of key ids announced here (callbacks, events).
    """

    generation: int = 0
    key_id: str | None = None
    lineage: str | None = None
    announced: frozenset[str] = frozenset()
    unsaved: UnsavedKey | None = None
    halted: bool = False


def next_step(stored: KeyRecord | None, held: Held, probe: Probe = Probe.NOT_PROBED) -> Next:
    """The step that the stored record and this process's holdings call for.

    `probe` is what a probe (after `RESUME_AND_PROBE`, `PROBE_HELD` or a refused
    `INITIALISE`) found, or what a check found of the stored key held here (refused:
    `STORED_REVOKED`); it concerns `stored`, or the key held here.
    """
    if stored is None:
        return _empty(held, probe)
    if held.halted and stored.key_id == held.key_id:
        return Next.WAIT_HALTED
    if held.unsaved is not None and held.unsaved.record.key_id != stored.key_id:
        return _unsaved(stored, held.unsaved, probe)
    if stored.pending is not None:
        return _resume(stored, probe)
    return _no_journal(stored, held, probe)


def _empty(held: Held, probe: Probe) -> Next:
    """The step for an empty store: a first use, or a reset."""
    if held.unsaved is not None and probe is not Probe.HELD_REVOKED:
        # Written back only if it works: a later reissue may have revoked it.
        return {
            Probe.HELD_WORKS: Next.WRITE_BACK_HELD,
            Probe.NO_ANSWER: Next.NOTHING_TO_DO,
        }.get(probe, Next.PROBE_HELD)
    reset = held.key_id is not None  # it held a stored key: the store was reset
    if reset and probe is Probe.HELD_REVOKED:
        return Next.RECOVER_INTO_EMPTY
    return Next.INITIALISE


def _no_journal(stored: KeyRecord, held: Held, probe: Probe) -> Next:
    """The step for a record without a journal: the key held here, or another one."""
    holds_it = stored.key_id == held.key_id and stored.lineage == held.lineage
    if holds_it and probe is Probe.STORED_REVOKED:
        return Next.RECOVER_REVOKED
    if holds_it and stored.generation == held.generation and stored.key_id in held.announced:
        return Next.NOTHING_TO_DO
    return Next.ADOPT


def _unsaved(stored: KeyRecord, unsaved: UnsavedKey, probe: Probe) -> Next:
    """The step for a key held here that the store does not hold."""
    follows = (
        stored.lineage == unsaved.record.lineage
        and stored.key_id == unsaved.follows_key_id
        and stored.generation + 1 == unsaved.record.generation
    )
    if follows or probe is Probe.HELD_WORKS:
        return Next.SAVE_HELD
    if probe is Probe.HELD_REVOKED:
        return Next.KEEP_HELD_ASIDE
    if probe is Probe.NO_ANSWER:
        return Next.NOTHING_TO_DO  # keep holding it; the next look asks again
    return Next.PROBE_HELD


def _resume(stored: KeyRecord, probe: Probe) -> Next:
    """The step an open journal calls for."""
    assert stored.pending is not None
    if probe in {Probe.HELD_WORKS, Probe.HELD_REVOKED}:
        probe = Probe.NOT_PROBED  # a probe of another key says nothing of the stored one
    saved = stored.generation > stored.pending.from_generation
    if probe is Probe.KEPT_ASIDE_WORKS and stored.kept_aside:
        return Next.PROMOTE_KEPT_ASIDE
    if saved and (not stored.kept_aside or probe is not Probe.NOT_PROBED):
        return Next.COMPLETE  # a revoked key is the verification's to find, and to mend
    if probe is Probe.NOT_PROBED:
        return Next.RESUME_AND_PROBE
    if probe is Probe.NO_ANSWER:
        return Next.NOTHING_TO_DO  # the journal stays open for the next look
    return Next.CLOSE_JOURNAL if probe is Probe.STORED_WORKS else Next.RECOVER


def after_refusal(
    stored: KeyRecord | None,
    *,
    sends_stored_key: bool,
    rotating: bool,
    probe: Probe = Probe.NOT_PROBED,
) -> Refusal:
    """What a 401 on an ordinary call leads to, given the store and this process.

    `sends_stored_key`: the client sent the key the store holds. `rotating`: a rotation
    of this process is in flight (the 401 is most likely its reissue landing).
    """
    if rotating:
        return Refusal.AWAIT_ROTATION
    if stored is None:
        return Refusal.LET_IT_STAND
    if not sends_stored_key:
        return Refusal.OFFER_STORED
    if not stored.kept_aside:
        return Refusal.LET_IT_STAND
    if probe is Probe.KEPT_ASIDE_WORKS:
        return Refusal.PROMOTE_KEPT_ASIDE
    return Refusal.PROBE if probe is Probe.NOT_PROBED else Refusal.LET_IT_STAND


def adoption_is_news(stored: KeyRecord, held: Held, *, sends_stored_key: bool) -> bool:
    """Whether adopting `stored` is news to announce (callbacks once per key id).

    It is not for the key a process started with, nor for a key it announced already.
    """
    starting = held.key_id is None
    return not (starting and sends_stored_key) and stored.key_id not in held.announced
