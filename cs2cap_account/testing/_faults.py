"""Fault scripting and seeded chaos for the fake.

A fault is picked for a request before anything else happens to it. Scripted faults
(`api.faults.fail(...)`, `drop(...)`, ...) apply to the next N requests of a route, in the
order they were scripted; chaos mode rolls a seeded die for requests no scripted fault took.
"""

from __future__ import annotations

import enum
import random
from collections import Counter
from collections.abc import Collection, Mapping
from typing import Final

import attrs

from cs2cap_account.testing._routes import ROUTE_NAMES

__all__ = ["ANY_ROUTE", "HTML_502_PAGE", "ChaosSettings", "Fault", "FaultInjector", "FaultKind"]

ANY_ROUTE: Final = "*"
"""Pass as the route to make a fault match a request on any route."""

HTML_502_PAGE: Final = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
    b"</body>\r\n</html>\r\n"
)


class FaultKind(str, enum.Enum):
    """What a fault does to a request. `.value` is the key in `FaultInjector.injected`."""

    ERROR = "error"
    """Answer with a status and `{"code", "detail"}` body; the handler does not run."""
    MONTHLY_QUOTA = "monthly_quota"
    """Answer `429 RATE_LIMIT_MONTHLY_QUOTA_EXCEEDED` with the caller's monthly numbers."""
    DELAY = "delay"
    """Wait `delay` seconds, then handle the request normally."""
    DROP = "drop"
    """Close the connection before the handler runs: nothing happened, no response."""
    DROP_AFTER_COMMIT = "drop_after_commit"
    """Run the handler (its effect is committed), then close the connection: a lost response."""
    DELAY_AFTER_COMMIT = "delay_after_commit"
    """Run the handler (its effect is committed), then wait `delay` seconds before answering."""
    RAW_BODY = "raw_body"
    """Answer with a raw, typically non-JSON body (an HTML 502 page); the handler does not run."""
    TRUNCATED_BODY = "truncated_body"
    """Run the handler, then send its status with the JSON body cut short."""


_RUNS_HANDLER: Final = frozenset(
    {
        FaultKind.DELAY,
        FaultKind.DROP_AFTER_COMMIT,
        FaultKind.DELAY_AFTER_COMMIT,
        FaultKind.TRUNCATED_BODY,
    }
)


@attrs.frozen
class Fault:
    """One fault to apply to one request. Build them with `FaultInjector`'s methods."""

    kind: FaultKind
    status: int = 500
    code: str | None = "INTERNAL_SERVER_ERROR"
    detail: str = "Internal Server Error"
    headers: Mapping[str, str] = attrs.field(factory=dict)
    delay: float = 0.0
    body: bytes = b""
    content_type: str = "text/html"

    @property
    def runs_handler(self) -> bool:
        """Whether the request's real handler runs (and commits its effect)."""
        return self.kind in _RUNS_HANDLER

    @property
    def delay_before(self) -> float:
        """Seconds to wait before anything else happens to the request."""
        return 0.0 if self.kind is FaultKind.DELAY_AFTER_COMMIT else self.delay

    @property
    def delay_after(self) -> float:
        """Seconds to wait after the handler committed its effect, before answering."""
        return self.delay if self.kind is FaultKind.DELAY_AFTER_COMMIT else 0.0


@attrs.define
class _Scripted:
    route: str
    fault: Fault
    remaining: int


@attrs.frozen
class ChaosSettings:
    """Probabilities (each 0..1, summing to at most 1) of each fault per request."""

    seed: int
    error: float = 0.0
    rate_limit: float = 0.0
    drop: float = 0.0
    drop_after_commit: float = 0.0
    delay: float = 0.0
    malformed: float = 0.0
    delay_seconds: float = 0.05
    routes: frozenset[str] | None = None

    def __attrs_post_init__(self) -> None:
        chances = self.chances()
        if any(not 0.0 <= p <= 1.0 for _, p in chances) or sum(p for _, p in chances) > 1.0:
            raise ValueError("chaos probabilities must each be in 0..1 and sum to at most 1")

    def chances(self) -> tuple[tuple[str, float], ...]:
        """Each fault's name with its probability, in the order the die is read."""
        return (
            ("error", self.error),
            ("rate_limit", self.rate_limit),
            ("drop", self.drop),
            ("drop_after_commit", self.drop_after_commit),
            ("delay", self.delay),
            ("malformed", self.malformed),
        )


_CHAOS_ERRORS: Final = (
    (500, "INTERNAL_SERVER_ERROR", "Internal Server Error"),
    (502, "BAD_GATEWAY", "Bad Gateway"),
    (503, "SERVICE_UNAVAILABLE", "Service temporarily unavailable"),
)


@attrs.define
class FaultInjector:
    """Scripts faults per route, runs seeded chaos, and counts what it injected.

    Every scripting method takes the route's stable name (`"get_key"`, `"reissue_key"`,
    `"list_sub_keys"`, `"create_sub_key"`, `"get_sub_key"`, `"update_sub_key"`,
    `"delete_sub_key"`, `"reissue_sub_key"`, or `ANY_ROUTE`) and `times`, the number of
    matching requests it applies to::

        api.faults.fail("get_key", status=503, code="SERVICE_UNAVAILABLE", times=2)
        api.faults.drop_after_commit("reissue_key")   # the reissue happens; its response is lost
        api.faults.chaos(seed=7, error=0.1, drop=0.05)
    """

    _script: list[_Scripted] = attrs.field(factory=list, init=False)
    _chaos: ChaosSettings | None = attrs.field(default=None, init=False)
    _rng: random.Random = attrs.field(factory=random.Random, init=False)
    _injected: Counter[str] = attrs.field(factory=Counter, init=False)

    # --- scripting ------------------------------------------------------------------------

    def fail(
        self,
        route: str,
        *,
        status: int = 503,
        code: str | None = "SERVICE_UNAVAILABLE",
        detail: str = "Service temporarily unavailable",
        headers: Mapping[str, str] | None = None,
        delay: float = 0.0,
        times: int = 1,
    ) -> None:
        """Answer the next `times` requests with `status` and a `{"code", "detail"}` body.

        `code=None` leaves `code` out of the body, as some proxies and older routes do.

        `headers` are added to (and override) the usual `X-RateLimit-*` headers, e.g.
        `{"Retry-After": "3"}`. The handler does not run, so nothing changes.
        """
        fault = Fault(FaultKind.ERROR, status, code, detail, dict(headers or {}), delay)
        self.add(route, fault, times=times)

    def rate_limited(self, route: str, *, retry_after: int = 1, times: int = 1) -> None:
        """Answer with `429 RATE_LIMIT_EXCEEDED` and `Retry-After: retry_after`."""
        self.fail(
            route,
            status=429,
            code="RATE_LIMIT_EXCEEDED",
            detail="Too Many Requests",
            headers={"Retry-After": str(retry_after), "X-RateLimit-Remaining": "0"},
            times=times,
        )

    def monthly_quota_exceeded(self, route: str, *, times: int = 1) -> None:
        """Answer with `429 RATE_LIMIT_MONTHLY_QUOTA_EXCEEDED` (no `Retry-After`)."""
        self.add(route, Fault(FaultKind.MONTHLY_QUOTA, status=429), times=times)

    def delay(self, route: str, seconds: float, *, times: int = 1) -> None:
        """Wait `seconds` before handling the next `times` requests normally."""
        self.add(route, Fault(FaultKind.DELAY, status=200, delay=seconds), times=times)

    def delay_after_commit(self, route: str, seconds: float, *, times: int = 1) -> None:
        """Run the handler, so its effect really happens, then wait `seconds` to answer.

        A client killed meanwhile never learns the outcome: a crash between a request
        taking effect and its caller recording the result.
        """
        fault = Fault(FaultKind.DELAY_AFTER_COMMIT, status=200, delay=seconds)
        self.add(route, fault, times=times)

    def drop(self, route: str, *, times: int = 1) -> None:
        """Close the connection without answering, before the handler runs.

        aiohttp's client resends an idempotent request (GET, DELETE) once on a fresh
        connection after a disconnect, so script `times=2` for a client to see the drop.
        """
        self.add(route, Fault(FaultKind.DROP), times=times)

    def drop_after_commit(self, route: str, *, times: int = 1) -> None:
        """Run the handler, so its effect really happens, then close the connection."""
        self.add(route, Fault(FaultKind.DROP_AFTER_COMMIT), times=times)

    def raw_body(
        self,
        route: str,
        body: bytes,
        *,
        status: int = 502,
        content_type: str = "text/html",
        times: int = 1,
    ) -> None:
        """Answer with `body` as-is (no JSON), without running the handler."""
        fault = Fault(FaultKind.RAW_BODY, status=status, body=body, content_type=content_type)
        self.add(route, fault, times=times)

    def html_502(self, route: str, *, times: int = 1) -> None:
        """Answer like a proxy whose upstream failed: an nginx-style HTML 502 page."""
        self.raw_body(route, HTML_502_PAGE, times=times)

    def truncated_json(self, route: str, *, times: int = 1) -> None:
        """Run the handler, then send its status with only half of its JSON body."""
        self.add(route, Fault(FaultKind.TRUNCATED_BODY, status=200), times=times)

    def add(self, route: str, fault: Fault, *, times: int = 1) -> None:
        """Apply `fault` to the next `times` requests on `route` (the general form)."""
        if route != ANY_ROUTE and route not in ROUTE_NAMES:
            raise ValueError(f"unknown route {route!r}; expected one of {sorted(ROUTE_NAMES)}")
        if times < 1:
            raise ValueError("times must be at least 1")
        self._script.append(_Scripted(route, fault, times))

    def chaos(
        self,
        seed: int,
        *,
        error: float = 0.0,
        rate_limit: float = 0.0,
        drop: float = 0.0,
        drop_after_commit: float = 0.0,
        delay: float = 0.0,
        malformed: float = 0.0,
        delay_seconds: float = 0.05,
        routes: Collection[str] | None = None,
    ) -> None:
        """Inject random faults with these per-request probabilities, reproducibly.

        `error` answers 500, 502 or 503; `rate_limit` answers 429 with `Retry-After: 1`;
        `malformed` answers an HTML 502 page or a truncated JSON body; `delay` waits
        `delay_seconds`. `routes` limits chaos to those route names (default: all).
        Scripted faults take precedence. Calling again replaces the settings and reseeds.
        """
        if routes is not None and not set(routes) <= ROUTE_NAMES:
            raise ValueError(f"unknown routes {sorted(set(routes) - ROUTE_NAMES)}")
        self._chaos = ChaosSettings(
            seed,
            error,
            rate_limit,
            drop,
            drop_after_commit,
            delay,
            malformed,
            delay_seconds,
            None if routes is None else frozenset(routes),
        )
        self._rng = random.Random(seed)  # noqa: S311 - reproducible test chaos, not crypto

    def stop_chaos(self) -> None:
        """Turn chaos mode off (scripted faults are unaffected)."""
        self._chaos = None

    def clear(self) -> None:
        """Forget every scripted fault not yet used, and turn chaos off."""
        self._script.clear()
        self._chaos = None

    # --- reading ---------------------------------------------------------------------------

    @property
    def injected(self) -> Counter[str]:
        """How many faults were applied, by `FaultKind` value (`"drop"`, `"error"`, ...)."""
        return self._injected

    @property
    def pending(self) -> int:
        """How many scripted fault applications are still waiting for a request."""
        return sum(entry.remaining for entry in self._script)

    # --- used by the app ------------------------------------------------------------------

    def take(self, route: str) -> Fault | None:
        """Return the fault for this request on `route`, if any, and count it."""
        fault = self._take_scripted(route) or self._roll_chaos(route)
        if fault is not None:
            self._injected[fault.kind.value] += 1
        return fault

    def _take_scripted(self, route: str) -> Fault | None:
        for entry in self._script:
            if entry.route in (route, ANY_ROUTE):
                entry.remaining -= 1
                if entry.remaining == 0:
                    self._script.remove(entry)
                return entry.fault
        return None

    def _roll_chaos(self, route: str) -> Fault | None:
        settings = self._chaos
        if settings is None or (settings.routes is not None and route not in settings.routes):
            return None
        roll = self._rng.random()
        for name, chance in settings.chances():
            if roll < chance:
                return self._chaos_fault(name, settings)
            roll -= chance
        return None

    def _chaos_fault(self, name: str, settings: ChaosSettings) -> Fault:
        if name == "error":
            status, code, detail = self._rng.choice(_CHAOS_ERRORS)
            return Fault(FaultKind.ERROR, status, code, detail)
        if name == "malformed":
            if self._rng.random() < 0.5:
                return Fault(FaultKind.RAW_BODY, status=502, body=HTML_502_PAGE)
            return Fault(FaultKind.TRUNCATED_BODY, status=200)
        fixed = {
            "rate_limit": Fault(
                FaultKind.ERROR,
                429,
                "RATE_LIMIT_EXCEEDED",
                "Too Many Requests",
                {"Retry-After": "1", "X-RateLimit-Remaining": "0"},
            ),
            "drop": Fault(FaultKind.DROP),
            "drop_after_commit": Fault(FaultKind.DROP_AFTER_COMMIT),
            "delay": Fault(FaultKind.DELAY, status=200, delay=settings.delay_seconds),
        }
        return fixed[name]
