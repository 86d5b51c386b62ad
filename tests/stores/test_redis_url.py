"""Reading a store URL into a topology: one table, no Redis."""

from __future__ import annotations

import pytest

from cs2cap_account.stores._redis_url import RedisTarget, Topology, parse_redis_url

S, C, T = Topology.SERVER, Topology.CLUSTER, Topology.SENTINEL


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://localhost:6379/0", RedisTarget(S, url="redis://localhost:6379/0")),
        ("rediss://h/1", RedisTarget(S, url="rediss://h/1")),
        ("unix:///run/redis.sock", RedisTarget(S, url="unix:///run/redis.sock")),
        ("REDIS://h", RedisTarget(S, url="REDIS://h")),
        ("redis+cluster://a:7000", RedisTarget(C, hosts=(("a", 7000),))),
        (
            "redis+cluster://a:7000,b:7001,[::1]:7002",
            RedisTarget(C, hosts=(("a", 7000), ("b", 7001), ("::1", 7002))),
        ),
        ("redis+cluster://a", RedisTarget(C, hosts=(("a", 6379),))),
        ("rediss+cluster://a:1", RedisTarget(C, hosts=(("a", 1),), tls=True)),
        (
            "redis+cluster://u:p%40ss@a:1",
            RedisTarget(C, hosts=(("a", 1),), username="u", password="p@ss"),
        ),
        (
            "redis+sentinel://s1:26379,s2/keys",
            RedisTarget(T, hosts=(("s1", 26379), ("s2", 26379)), service="keys"),
        ),
        (
            "redis+sentinel://:secret@s1:5000/my%20keys/3",
            RedisTarget(T, hosts=(("s1", 5000),), service="my keys", db=3, password="secret"),
        ),
        (
            "rediss+sentinel://s1/keys",
            RedisTarget(T, hosts=(("s1", 26379),), service="keys", tls=True),
        ),
    ],
)
def test_urls_name_their_topology(url: str, expected: RedisTarget) -> None:
    """Each scheme reads into its topology, hosts with their ports (or the default one),
    the Sentinel service and database, TLS, and the login, percent-decoded.
    """
    assert parse_redis_url(url) == expected


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("localhost:6379", "no '://'"),
        ("memcached://h", "unknown Redis URL scheme"),
        ("redis+raft://h", "unknown Redis URL scheme"),
        ("redis+cluster://a:1/0", "no path"),
        ("redis+sentinel://s1:26379", "names the monitored primary"),
        ("redis+sentinel://s1/keys/0/extra", "names the monitored primary"),
        ("redis+sentinel://s1/keys/zero", "is a number"),
        ("redis+cluster://a:port", "not a number"),
        ("redis+cluster://a:70000", "not a number"),
        ("redis+cluster://a:1,,b:2", "no name"),
        ("redis+cluster://::1", "in brackets"),
        ("redis+cluster://[::1", "closing bracket"),
        ("redis+cluster://a:1?ssl_cert_reqs=none", "no query options"),
        ("redis+sentinel://s1/keys#x", "no query options"),
    ],
)
def test_unusable_urls_are_refused_saying_why(url: str, message: str) -> None:
    """A URL that cannot name a topology is a `ValueError` that says what is wrong."""
    with pytest.raises(ValueError, match=message):
        parse_redis_url(url)


def test_a_password_is_never_shown() -> None:
    """Neither the target's repr nor a refusal repeats the password in the URL, wherever
    it sits: a password with an unencoded `/` or `:` is read whole (up to the last `@`).
    """
    target = parse_redis_url("redis+sentinel://:hunter2@s1:1/keys")
    assert "hunter2" not in repr(target)
    assert parse_redis_url("redis+cluster://admin:se:cr/et@h:1").password == "se:cr/et"
    for url in (
        "redis+cluster://:hunter2@a:1/0",
        "redis+cluster://admin:hunter2/x@h:port",
        "redis+cluster://hunter2:1x",
        "redis+sentinel://u:hunter2@s1",
    ):
        with pytest.raises(ValueError) as caught:  # noqa: PT011 - the message is checked
            parse_redis_url(url)
        assert "hunter2" not in str(caught.value)
