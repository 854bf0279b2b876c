"""``runrpc --announce``: keep this server's address in a Redis its clients follow.

The server adds its address and marks it ``up`` when it serves, refreshes the
mark's TTL every third of it, marks it ``draining`` the moment SIGTERM
arrives (clients stop sending new calls there; calls that arrive anyway are
refused with ``ServerStopping`` and retried elsewhere) and removes it when it
has stopped. A Redis that cannot be reached is logged once per outage; the
server serves on, and announces itself again when Redis is back.
(``django_zrpc.discovery.redis_registry`` says how the keys are laid out.)
"""

from __future__ import annotations

import logging
import time

import gevent

from django_zrpc.discovery import redis_registry
from django_zrpc.discovery.redis_registry import DRAINING, UP, Keys

logger = logging.getLogger("django_zrpc.server")


class Announcer:
    """Announce ``address`` as an instance of the service of the Redis URL ``source``."""

    def __init__(self, source: str, address: str, ttl: float) -> None:
        url, self.service = redis_registry.split(source)
        self._redis = redis_registry.redis_module()
        self.where = f"{url.split('?')[0]} (service {self.service!r})"
        self.address = address
        self.ttl = ttl
        self._client = redis_registry.connect(url)
        self._keys = Keys(self.service)
        self._state = UP
        self._greenlet: gevent.Greenlet | None = None
        self._draining: gevent.Greenlet | None = None
        self._failing_since: float | None = None

    def start(self) -> None:
        """Announce now, then keep the announcement alive in a greenlet."""
        self._write(publish=True)
        self._greenlet = gevent.spawn(self._refresh)

    def drain(self) -> None:
        """Tell clients to send no more calls here (SIGTERM's first step)."""
        self._state = DRAINING
        self._write(publish=True)

    def start_draining(self) -> None:
        """``drain()`` in a greenlet of its own: stopping does not wait for Redis."""
        if self._draining is None:
            self._draining = gevent.spawn(self.drain)

    def withdraw(self) -> None:
        """Remove this instance (the server has stopped)."""
        if self._draining is not None:
            self._draining.join(timeout=2 * redis_registry.SOCKET_TIMEOUT)
        if self._greenlet is not None:
            self._greenlet.kill()
        try:
            pipe = self._client.pipeline()
            pipe.delete(self._keys.instance(self.address))
            pipe.srem(self._keys.instances, self.address)
            pipe.publish(self._keys.changes, self.address)
            pipe.execute()
        except self._redis.RedisError as err:
            logger.warning(
                "Could not remove %s from %s: %s; it expires within %g s.",
                self.address,
                self.where,
                err,
                self.ttl,
            )

    def _refresh(self) -> None:
        while True:
            gevent.sleep(self.ttl / 3)
            self._write(publish=self._failing_since is not None)

    def _write(self, publish: bool) -> None:
        try:
            pipe = self._client.pipeline()
            pipe.sadd(self._keys.instances, self.address)
            pipe.set(self._keys.instance(self.address), self._state, px=int(self.ttl * 1000))
            if publish:
                pipe.publish(self._keys.changes, self.address)
            pipe.execute()
        except self._redis.RedisError as err:
            if self._failing_since is None:
                self._failing_since = time.monotonic()
                logger.warning(
                    "Cannot announce %s in %s: %s; serving on, and trying again every %g s.",
                    self.address,
                    self.where,
                    err,
                    self.ttl / 3,
                )
            return
        if self._failing_since is not None:
            logger.warning(
                "Announced %s in %s again after %.1f s.",
                self.address,
                self.where,
                time.monotonic() - self._failing_since,
            )
            self._failing_since = None


def build_announcer(
    source: str, address: str | None, host: str, port: int, ttl: float
) -> Announcer:
    """Return the announcer of a server listening on ``host:port``.

    ``address`` is what callers should dial; without it the listening
    address, which must then be one they can reach. Raises
    ``ZRPCConfigurationError`` with a sentence saying what is wrong.
    """
    from django_zrpc.exceptions import ZRPCConfigurationError

    if address is None:
        if host in ("0.0.0.0", "::", "*", ""):
            raise ZRPCConfigurationError(
                f"runrpc listens on every interface ({host}), which callers cannot dial: "
                "give the address they should use with --announce-address tcp://HOST:PORT "
                "(or ZRPC_ANNOUNCE_ADDRESS)."
            )
        address = f"tcp://[{host}]:{port}" if ":" in host else f"tcp://{host}:{port}"
    errors = redis_registry.announcement_errors(source, address, ttl)
    if errors:
        raise ZRPCConfigurationError(" ".join(errors))
    return Announcer(source, address, float(ttl))
