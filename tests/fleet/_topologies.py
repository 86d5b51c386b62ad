"""Real Redis topologies on loopback: a Cluster (3 primaries + 3 replicas), and a primary
with a replica watched by three sentinels.

Every server is a `redis-server` process of its own, without persistence, in a temp dir;
every wait is bounded; `close()` kills whatever is still running.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import attrs

START_BOUND = 20.0
FAILOVER_BOUND = 30.0
SERVICE = "keys"


def _free_port(*, bus: bool = False) -> int:
    """A free loopback port; with `bus`, one whose port + 10000 (the cluster bus) is free too."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
        if not bus:
            return port
        if port + 10000 < 65536:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
                try:
                    probe.bind(("127.0.0.1", port + 10000))
                except OSError:
                    continue
                return port
    raise AssertionError("no free port pair for a cluster node")


def _redis_cli() -> str:
    path = shutil.which("redis-cli")
    assert path is not None, "redis-cli is not installed"
    return path


def _ask(port: int, *command: str) -> str:
    """One command to the server on `port`, answered in redis-cli's plain text."""
    result = subprocess.run(  # noqa: S603 - our own fixed arguments
        [_redis_cli(), "-p", str(port), *command],
        capture_output=True,
        text=True,
        timeout=5,
        check=False,
    )
    return result.stdout


def _until(condition: object, bound: float, what: str) -> None:
    """Poll `condition()` every 50 ms until it is true; fail after `bound` seconds."""
    assert callable(condition)
    deadline = time.monotonic() + bound
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except (OSError, subprocess.SubprocessError):
            pass
        time.sleep(0.05)
    raise AssertionError(f"{what} within {bound:g} s")


@attrs.define
class Server:
    """One redis-server process (a node, a primary, a replica or a sentinel)."""

    port: int
    proc: subprocess.Popen[bytes]
    directory: Path
    argv: list[str] = attrs.field(factory=list)

    def restart(self) -> None:
        """Start it again as it was started (a node rejoins its cluster from its config)."""
        assert self.proc.poll() is not None, "still running"
        self.proc = _spawn(self.argv)
        _until(self.answers, START_BOUND, f"redis-server on port {self.port} did not answer")

    def kill(self) -> None:
        """SIGKILL it, as a crash would; reaped."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def answers(self) -> bool:
        """Whether it answers PING."""
        return _ask(self.port, "PING").strip() == "PONG"


def _spawn(argv: list[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(  # noqa: S603 - our own fixed arguments
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def _start(executable: str, directory: Path, port: int, *extra: str) -> Server:
    directory.mkdir(parents=True, exist_ok=True)
    options = [
        "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
        "--dir", str(directory), "--daemonize", "no", "--loglevel", "warning",
        "--logfile", str(directory / "redis.log"),
    ]  # fmt: skip
    argv = [executable, *options, *extra]
    server = Server(port, _spawn(argv), directory, argv)
    try:
        _until(server.answers, START_BOUND, f"redis-server on port {port} did not answer")
    except BaseException:
        server.kill()
        raise
    return server


@attrs.define
class Cluster:
    """A Redis Cluster of 3 primaries and 3 replicas, one slot range per primary."""

    nodes: list[Server]

    @property
    def url(self) -> str:
        """A `redis+cluster://` URL with every node as a seed."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{node.port}" for node in self.nodes)

    def primary_of(self, key: str) -> Server:
        """The node that serves `key`'s slot now."""
        node = self._serving(key)
        if node is None:
            raise AssertionError(f"no primary serves the slot of {key!r}")
        return node

    def _serving(self, key: str) -> Server | None:
        """The live node that says it serves `key`'s slot as a primary, if any."""
        live = [node for node in self.nodes if node.proc.poll() is None]
        slot = _ask(live[0].port, "CLUSTER", "KEYSLOT", key).strip()
        for node in live:
            lines = _ask(node.port, "CLUSTER", "NODES").splitlines()
            for line in lines:
                fields = line.split()
                if "myself" in fields[2] and "master" in fields[2]:
                    ranges = fields[8:]
                    if any(_in_range(int(slot), r) for r in ranges):
                        return node
        return None

    def fail_primary_of(self, key: str) -> Server:
        """SIGKILL the primary serving `key`; bounded wait until its replica took over.

        Returns the killed node (see `rejoin()`).
        """
        old = self.primary_of(key)
        old.kill()

        def promoted() -> bool:
            serving = self._serving(key)
            return serving is not None and serving is not old and self.healthy()

        _until(promoted, FAILOVER_BOUND, "no replica took over the killed primary's slots")
        return old

    def replica_of(self, primary: Server) -> Server:
        """The live replica of `primary`."""
        for node in self.nodes:
            if node is primary or node.proc.poll() is not None:
                continue
            role = _ask(node.port, "INFO", "replication")
            if "role:slave" in role and f"master_port:{primary.port}" in role:
                return node
        raise AssertionError(f"no replica of the node on port {primary.port}")

    def rejoin(self, node: Server) -> None:
        """Restart a killed node: it rejoins as a replica; bounded wait until it synced."""
        node.restart()
        _until(self.replicas_synced, FAILOVER_BOUND, "the restarted node did not sync")

    def replicas_synced(self) -> bool:
        """Every live replica has synced with its primary (only then can it take over)."""
        roles = [_ask(node.port, "INFO", "replication") for node in self.nodes]
        replicas = [role for role in roles if "role:slave" in role]
        return len(replicas) == len(self.nodes) // 2 and all(
            "master_link_status:up" in role for role in replicas
        )

    def healthy(self) -> bool:
        """Every live node reports the cluster ok."""
        return all(
            "cluster_state:ok" in _ask(node.port, "CLUSTER", "INFO")
            for node in self.nodes
            if node.proc.poll() is None
        )

    def wait_healthy(self, bound: float = FAILOVER_BOUND) -> None:
        """Bounded wait until every live node says the cluster is ok (after a failover)."""
        _until(self.healthy, bound, "the cluster did not report ok")

    def close(self) -> None:
        """Kill every node."""
        for node in self.nodes:
            node.kill()


def _in_range(slot: int, text: str) -> bool:
    if text.startswith("["):
        return False  # a slot being migrated
    low, _, high = text.partition("-")
    return int(low) <= slot <= int(high or low)


def start_cluster(executable: str, directory: Path) -> Cluster:
    """Six nodes on free ports, joined by `redis-cli --cluster create`, waited on to be ok."""
    nodes: list[Server] = []
    try:
        for index in range(6):
            port = _free_port(bus=True)
            nodes.append(
                _start(
                    executable,
                    directory / f"node-{index}",
                    port,
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    f"nodes-{port}.conf",
                    "--cluster-node-timeout",
                    "1000",
                )
            )
        subprocess.run(  # noqa: S603 - our own fixed arguments
            [
                _redis_cli(),
                "--cluster",
                "create",
                *(f"127.0.0.1:{node.port}" for node in nodes),
                "--cluster-replicas",
                "1",
                "--cluster-yes",
            ],
            capture_output=True,
            timeout=START_BOUND,
            check=True,
        )
        cluster = Cluster(nodes)
        cluster.wait_healthy(START_BOUND)
        _until(cluster.replicas_synced, START_BOUND, "the cluster's replicas did not sync")
        return cluster
    except BaseException:
        for node in nodes:
            node.kill()
        raise


@attrs.define
class SentinelSet:
    """A primary, one replica, and three sentinels watching them as `SERVICE`."""

    primary: Server
    replica: Server
    sentinels: list[Server]

    @property
    def url(self) -> str:
        """A `redis+sentinel://` URL listing the three sentinels."""
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        return f"redis+sentinel://{hosts}/{SERVICE}/0"

    def primary_port(self) -> int:
        """The port of the primary the sentinels name now."""
        answer = _ask(self.sentinels[0].port, "SENTINEL", "get-master-addr-by-name", SERVICE)
        return int(answer.split()[1])

    def wait_for_failover(self, old_port: int) -> int:
        """Bounded wait until the sentinels name another primary, and it takes writes."""
        _until(lambda: self.primary_port() != old_port, FAILOVER_BOUND, "no failover happened")
        port = self.primary_port()
        _until(
            lambda: "role:master" in _ask(port, "INFO", "replication"),
            FAILOVER_BOUND,
            "the promoted replica did not become a primary",
        )
        return port

    def rejoin(self, old: Server, primary_port: int) -> None:
        """Restart the old primary; the sentinels make it a replica of the new one; bounded
        wait until it synced.
        """
        old.restart()
        _until(
            lambda: (
                "master_link_status:up" in _ask(old.port, "INFO", "replication")
                and f"master_port:{primary_port}" in _ask(old.port, "INFO", "replication")
            ),
            FAILOVER_BOUND,
            "the old primary did not come back as a replica",
        )

    def close(self) -> None:
        """Kill every process."""
        for server in (*self.sentinels, self.replica, self.primary):
            server.kill()


def start_sentinel_set(executable: str, directory: Path) -> SentinelSet:
    """Start the primary, its replica, then three sentinels; wait until they see each other."""
    started: list[Server] = []
    try:
        primary = _start(executable, directory / "primary", _free_port())
        started.append(primary)
        replica = _start(
            executable,
            directory / "replica",
            _free_port(),
            "--replicaof", "127.0.0.1", str(primary.port),
        )  # fmt: skip
        started.append(replica)
        _until(
            lambda: "master_link_status:up" in _ask(replica.port, "INFO", "replication"),
            START_BOUND,
            "the replica did not sync with the primary",
        )
        sentinels = []
        for index in range(3):
            port = _free_port()
            home = directory / f"sentinel-{index}"
            home.mkdir(parents=True)
            config = home / "sentinel.conf"
            config.write_text(
                f"port {port}\n"
                "bind 127.0.0.1\n"
                f"dir {home}\n"
                f"sentinel monitor {SERVICE} 127.0.0.1 {primary.port} 2\n"
                f"sentinel down-after-milliseconds {SERVICE} 1000\n"
                f"sentinel failover-timeout {SERVICE} 5000\n"
                f"sentinel parallel-syncs {SERVICE} 1\n"
            )
            argv = [
                executable, str(config), "--sentinel",
                "--logfile", str(home / "sentinel.log"), "--loglevel", "warning",
            ]  # fmt: skip
            sentinel = Server(port, _spawn(argv), home, argv)
            started.append(sentinel)
            _until(sentinel.answers, START_BOUND, f"sentinel on port {port} did not answer")
            sentinels.append(sentinel)
        watched = SentinelSet(primary, replica, sentinels)
        _until(
            lambda: all(_knows_the_set(s.port) for s in sentinels),
            START_BOUND,
            "the sentinels did not discover the replica and each other",
        )
        return watched
    except BaseException:
        for server in started:
            server.kill()
        raise


def _knows_the_set(port: int) -> bool:
    replicas = _ask(port, "SENTINEL", "replicas", SERVICE)
    others = _ask(port, "SENTINEL", "sentinels", SERVICE)
    return "name" in replicas and others.count("runid") >= 2
