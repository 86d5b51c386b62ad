"""`cs2cap-account demo`: every step, in order, with keys only redacted, quickly."""

from __future__ import annotations

import re
import time

from ._support import assert_no_plaintext, env_for, run


async def test_demo_walks_through_every_step_without_showing_a_key() -> None:
    """Exit 0 within 15 s, each numbered step and callback, the summary, no plaintext key.

    The environment points at a port nothing listens on: the demo needs no network and
    no key of its own.
    """
    env = env_for(None, CS2C_API_BASE="http://127.0.0.1:9/v1", CS2C_API_KEY="sk_live_root_x")
    started = time.monotonic()
    result = await run("demo", env=env)
    elapsed = time.monotonic() - started
    assert result.status == 0, result.stderr
    assert result.stderr == ""
    assert elapsed < 15
    out = result.stdout
    steps = [
        "1. Key metadata and rate-limit headers",
        "2. A scheduled rotation: the key is older than max_age",
        "3. An on-demand rotation: await rotator.rotate_now()",
        "4. Child keys re-created after a rotation",
        "5. A 429 absorbed by backoff",
        "6. A lost reissue response, recovered with the session token",
        "7. A child key rotated on its own schedule: child_max_age",
        "Summary",
    ]
    positions = [out.index(step) for step in steps]
    assert positions == sorted(positions)
    assert "of 300 requests left in this minute" in out
    for generation, reason in ((2, "max_age"), (3, "manual"), (4, "manual"), (5, "manual")):
        assert f"-> on_rotate callback: generation {generation}, new key sk_live_root_…" in out
        assert f"(reason: {reason})" in out
    assert "(reason: max_age)" in out[positions[1] : positions[2]]
    assert out[: positions[-2]].count("still works: no.") == 1
    assert "market-bot no, dashboard no" in out
    assert "overrides kept: rate 60 requests/minute, no quota override" in out
    assert "-> on_retry hook: GET /account/key got HTTP 429 RATE_LIMIT_EXCEEDED" in out
    assert "and 1 retry: the caller saw no error" in out
    assert "Recoveries: 1." in out
    assert "child keys re-created: dashboard, market-bot" in out
    child_step = out[positions[-2] : positions[-1]]
    assert "-> on_child_rotate callback: bot, new key sk_live_child_…" in child_step
    assert "(reason: max_age)" in child_step
    assert re.search(r"Rotated the child bot [0-9a-f-]{36} -> [0-9a-f-]{36}; the old bot key "
                     r"still works: no\.", child_step)  # fmt: skip
    assert "(unchanged: yes); root reissues in this step: 0." in child_step
    assert re.search(r"dashboard [0-9a-f-]{36} still authenticates, active: yes\.", child_step)
    summary = out[positions[-1] :]
    assert "reissues at the server  5 (one of them lost and recovered)" in summary
    assert "rotations announced     4 (generations 2 to 5)" in summary
    assert "recoveries              1" in summary
    assert "child reissues          1 (bot, on its own schedule)" in summary
    assert_no_plaintext(result, None)
