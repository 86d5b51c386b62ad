"""Where a `RedisKeyStore` finds Redis: a URL read into a topology, and the client for it.

Three topologies, told apart by the URL's scheme:

- one server: `redis://`, `rediss://` (TLS), `unix://`, as redis-py reads them;
- a Redis Cluster: `redis+cluster://[user:password@]host:port[,host:port...]` (or
  `rediss+cluster://`), any of its nodes as seeds;
- a Sentinel-managed primary: `redis+sentinel://[user:password@]host:port[,host:port...]
  /SERVICE[/DB]` (or `rediss+sentinel://`), the sentinels' addresses and the name they
  monitor the primary under. The password is the primary's; the sentinels are asked
  without one.

`parse_redis_url()` is pure (table-tested); `connect()` builds the redis-py client, with
every connection bounded by the store's timeout and redis-py's own retry (exponential
backoff with jitter) for reconnecting after a dropped connection or a failover.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import unquote

import attrs

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.asyncio.cluster import RedisCluster
    from redis.asyncio.sentinel import Sentinel

__all__ = ["Connected", "RedisTarget", "Topology", "connect", "parse_redis_url"]

_DEFAULT_PORT: Final = 6379
_DEFAULT_SENTINEL_PORT: Final = 26379
# redis-py's reconnection: tries after the first, and the backoff between them (seconds).
_RECONNECT_TRIES: Final = 3
_RECONNECT_BASE: Final = 0.05
_RECONNECT_CAP: Final = 1.0


class Topology(enum.Enum):
    """How the Redis behind a URL is laid out."""

    SERVER = "server"
    CLUSTER = "cluster"
    SENTINEL = "sentinel"


@attrs.frozen(repr=False)
class RedisTarget:
    """A URL, read: the topology, the addresses, and what to log in in with.

    For `SERVER` the URL itself is kept for redis-py to read. `repr()` shows no password.
    """

    topology: Topology
    url: str = ""
    hosts: tuple[tuple[str, int], ...] = ()
    service: str = ""
    db: int = 0
    username: str | None = None
    password: str | None = None
    tls: bool = False

    def __repr__(self) -> str:
        where = ",".join(f"{host}:{port}" for host, port in self.hosts) or "<url>"
        return f"RedisTarget({self.topology.value}, {where})"


def parse_redis_url(url: str) -> RedisTarget:
    """Read a store URL; `ValueError` if it cannot be used.

    No message repeats any part of the URL's text (a password may sit anywhere in it).
    """
    scheme, _, rest = url.partition("://")
    if not rest:
        raise ValueError("a Redis URL looks like redis://host:6379/0 (no '://' found)")
    scheme = scheme.lower()
    if scheme in {"redis", "rediss", "unix"}:
        return RedisTarget(Topology.SERVER, url=url)
    base, _, kind = scheme.partition("+")
    if base not in {"redis", "rediss"} or kind not in {"cluster", "sentinel"}:
        raise ValueError(
            "unknown Redis URL scheme: use redis://, rediss://, unix://, "
            "redis+cluster:// or redis+sentinel://"
        )
    userinfo, at, located = rest.rpartition("@")
    if not at:
        userinfo, located = "", rest
    if "?" in located or "#" in located:
        raise ValueError(
            f"a {scheme}:// URL takes no query options; for TLS or other connection "
            "settings, pass a client of yours"
        )
    netloc, _, path_text = located.partition("/")
    username, password = _login(userinfo) if at else (None, None)
    default = _DEFAULT_SENTINEL_PORT if kind == "sentinel" else _DEFAULT_PORT
    hosts = tuple(_host_port(item, default) for item in netloc.split(","))
    path = [segment for segment in path_text.split("/") if segment]
    tls = base == "rediss"
    if kind == "cluster":
        if path:
            raise ValueError("a Redis Cluster has one database: a redis+cluster:// URL has no path")
        return RedisTarget(
            Topology.CLUSTER, hosts=hosts, username=username, password=password, tls=tls
        )
    if not path or len(path) > 2:
        raise ValueError(
            "a redis+sentinel:// URL names the monitored primary: "
            "redis+sentinel://host:26379,host2:26379/SERVICE[/DB]"
        )
    db = _db(path[1]) if len(path) == 2 else 0
    return RedisTarget(
        Topology.SENTINEL,
        hosts=hosts,
        service=unquote(path[0]),
        db=db,
        username=username,
        password=password,
        tls=tls,
    )


def _login(userinfo: str) -> tuple[str | None, str | None]:
    """`user:password`, `:password` or `user`, percent-decoded."""
    user, colon, password = userinfo.partition(":")
    return (unquote(user) or None, unquote(password) if colon else None)


@attrs.frozen
class Connected:
    """The client a store talks through, and the Sentinel client behind it, if any."""

    client: Redis | RedisCluster
    sentinel: Sentinel | None = None

    async def aclose(self) -> None:
        """Close the client's connections, and those to the sentinels."""
        try:
            await self.client.aclose()
        finally:
            if self.sentinel is not None:
                for sentinel in self.sentinel.sentinels:
                    await sentinel.aclose()


def connect(target: RedisTarget, *, timeout: float) -> Connected:
    """The redis-py client for `target`: commands and connecting bounded by `timeout`."""
    from redis.asyncio import Redis
    from redis.asyncio.cluster import ClusterNode, RedisCluster
    from redis.asyncio.retry import Retry
    from redis.asyncio.sentinel import Sentinel
    from redis.backoff import ExponentialWithJitterBackoff

    options: dict[str, Any] = {
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "retry": Retry(
            ExponentialWithJitterBackoff(base=_RECONNECT_BASE, cap=_RECONNECT_CAP),
            _RECONNECT_TRIES,
        ),
    }
    if target.topology is Topology.SERVER:
        return Connected(Redis.from_url(target.url, **options))
    login: dict[str, Any] = {"username": target.username, "password": target.password}
    if target.topology is Topology.CLUSTER:
        nodes = [ClusterNode(host, port) for host, port in target.hosts]
        cluster = RedisCluster(startup_nodes=nodes, ssl=target.tls, **login, **options)
        return Connected(cluster)
    sentinel = Sentinel(  # type: ignore[no-untyped-call]
        list(target.hosts),
        sentinel_kwargs={
            "socket_timeout": timeout,
            "socket_connect_timeout": timeout,
            "ssl": target.tls,
        },
        **options,
    )
    primary = sentinel.master_for(target.service, db=target.db, ssl=target.tls, **login)
    return Connected(primary, sentinel)


def _host_port(item: str, default: int) -> tuple[str, int]:
    """`host`, `host:port`, `[v6]` or `[v6]:port`, with `default` for a missing port."""
    if item.startswith("["):
        host, closed, after = item[1:].partition("]")
        if not closed or (after and not after.startswith(":")):
            raise ValueError("a Redis URL lists an IPv6 host without its closing bracket")
        port = after.removeprefix(":")
    else:
        host, colon, port = item.rpartition(":")
        if not colon:
            host, port = item, ""
        if ":" in host:
            raise ValueError("a Redis URL lists an IPv6 host: write it in brackets, [::1]:6379")
    if not host:
        raise ValueError("a Redis URL lists a host with no name")
    if not port:
        return host, default
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError("a Redis URL lists a host whose port is not a number from 1 to 65535")
    return host, int(port)


def _db(text: str) -> int:
    if not text.isdigit():
        raise ValueError("the database of a redis+sentinel:// URL is a number")
    return int(text)
