"""The fleet tests' redis-server, for the store contract tests that run on Redis too."""

from fleet.conftest import redis_server

__all__ = ["redis_server"]
