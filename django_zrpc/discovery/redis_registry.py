"""A service's instances in Redis: ``runrpc --announce`` writes them, clients follow them.

For ``redis://host:6379/0?service=tickets``, each instance keeps

- its address in the set ``zrpc:tickets:instances``, and
- the key ``zrpc:tickets:instance:<address>``, ``up`` or ``draining``, with a
  TTL that the server refreshes (``ANNOUNCE_TTL``): a server that dies
  without a word drops out when its key expires;

and publishes on ``zrpc:tickets:changes`` whenever it comes, drains or goes.
A client reads the set and the keys at start, again on every message, and
every ``REREAD`` seconds in case a message was missed or a key expired; it
calls the instances that are ``up``. A key with no TTL (written by hand, or
by a tool of its own) would outlive its server, so a client refuses it and
says so. Uses redis-py (the ``redis`` extra).
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

from django_zrpc.discovery.directory import WatchedDirectory
from django_zrpc.exceptions import ZRPCConfigurationError

logger = logging.getLogger("django_zrpc.discovery")

#: Seconds between two full reads of a service when no change was published.
REREAD = 2.0
#: Seconds a Redis command may take before the source counts as unreachable.
SOCKET_TIMEOUT = 2.0

# A tcp:// endpoint a caller can dial: a host name or address, and a port.
_ADDRESS = re.compile(r"^tcp://(\[[0-9a-fA-F:.]+\]|[^\s:/\[\]*]+):\d{1,5}$")

UP = b"up"
DRAINING = b"draining"


def redis_module() -> Any:
    """Return redis-py, or raise the error that says how to install it."""
    try:
        import redis
    except ImportError as err:
        raise ZRPCConfigurationError(
            'Discovery through Redis needs redis-py: pip install "django-zrpc[redis]".'
        ) from err
    return redis


def split(source: str) -> tuple[str, str]:
    """Return the Redis URL (without ``service``) and the service name of ``source``.

    Raises ``ValueError`` quoting ``source`` when it is not one.
    """
    parts = urlsplit(source)
    query = parse_qs(parts.query)
    services = query.pop("service", [])
    service = services[0] if len(services) == 1 else ""
    if parts.scheme not in ("redis", "rediss") or not parts.hostname or not service:
        raise ValueError(
            f"{source!r} is not a Redis endpoint; write it like "
            "'redis://redis.internal:6379/0?service=tickets'."
        )
    if any(char in service for char in " :*?[]"):
        raise ValueError(f"The service name {service!r} in {source!r} may not hold ' :*?[]'.")
    url = urlunsplit(parts._replace(query=urlencode(query, doseq=True)))
    return url, service


def announcement_errors(source: Any, address: Any, ttl: Any) -> list[str]:
    """Say, in sentences, what is wrong with what ``runrpc --announce`` was given."""
    errors = []
    try:
        split(source if isinstance(source, str) else repr(source))
    except ValueError as err:
        errors.append(f"Cannot announce this server: {err}")
    else:
        try:
            redis_module()
        except ZRPCConfigurationError as err:
            errors.append(str(err))
    if address is not None and not (
        isinstance(address, str) and address.startswith("tcp://") and _ADDRESS.match(address)
    ):
        errors.append(
            f"The address to announce must be like 'tcp://10.0.0.5:4242', not {address!r}."
        )
    if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not ttl >= 1:
        errors.append(f"ZRPC_ANNOUNCE_TTL must be 1 second or more, not {ttl!r}.")
    return errors


class Keys:
    """The names a service's instances are kept under."""

    def __init__(self, service: str) -> None:
        self.instances = f"zrpc:{service}:instances"
        self.changes = f"zrpc:{service}:changes"
        self._instance = f"zrpc:{service}:instance:"

    def instance(self, address: str | bytes) -> str:
        if isinstance(address, bytes):
            address = address.decode()
        return self._instance + address


def connect(url: str) -> Any:
    """A Redis client for ``url`` whose commands give up after ``SOCKET_TIMEOUT``."""
    return redis_module().Redis.from_url(
        url,
        socket_timeout=SOCKET_TIMEOUT,
        socket_connect_timeout=SOCKET_TIMEOUT,
    )


def read_up(client: Any, keys: Keys) -> tuple[list[str], list[str]]:
    """Return the addresses of the instances that are up, and of those up with no TTL.

    Forgets expired instances. One round trip for the states and the TTLs.
    """
    members = sorted(client.smembers(keys.instances))
    if not members:
        return [], []
    pipe = client.pipeline(transaction=False)
    names = [keys.instance(member) for member in members]
    pipe.mget(names)
    for name in names:
        pipe.pttl(name)
    states, *ttls = pipe.execute()
    gone = [member for member, state in zip(members, states, strict=True) if state is None]
    if gone:
        client.srem(keys.instances, *gone)
    up: list[str] = []
    lasting: list[str] = []
    for member, state, ttl in zip(members, states, ttls, strict=True):
        if state == UP:
            # PTTL is -1 for a key that never expires (-2: gone since MGET).
            (lasting if ttl == -1 else up).append(member.decode())
    return up, lasting


class RedisDirectory(WatchedDirectory):
    """The instances of one service that are up, as a Redis holds them."""

    def __init__(self, source: str) -> None:
        url, service = split(source)
        self._redis = redis_module()
        self._url = url
        self._where = urlsplit(url)._replace(query="").geturl()
        self._client: Any = None  # made in the watcher's thread, the one that uses it
        self._keys = Keys(service)
        self._pubsub: Any = None
        self._next_read = 0.0
        self._refused: set[str] = set()  # said once each
        super().__init__(source)

    def watch_once(self) -> float:
        try:
            if self._client is None:
                self._client = connect(self._url)
            if self._pubsub is None:
                self._pubsub = self._client.pubsub(ignore_subscribe_messages=True)
                self._pubsub.subscribe(self._keys.changes)
                self._next_read = 0.0  # subscribed: now read what is there
            message = self._pubsub.get_message(timeout=max(self._next_read - time.monotonic(), 0.0))
            if message is not None or time.monotonic() >= self._next_read:
                up, lasting = read_up(self._client, self._keys)
                self._refuse(lasting)
                self.update(up)
                self._next_read = time.monotonic() + REREAD
            self.reached()
        except self._redis.RedisError as err:
            self._drop_subscription()
            self.unreachable(err, f"Redis at {self._where} is unreachable")
        return 0.0

    def _refuse(self, lasting: list[str]) -> None:
        for address in lasting:
            if address not in self._refused:
                logger.warning(
                    "%s: the key %r has no TTL, so it would outlive its server; %s is not "
                    "called. Announce with runrpc --announce, or set the key with a TTL "
                    "(SET ... PX) and refresh it.",
                    self.source,
                    self._keys.instance(address),
                    address,
                )
        self._refused = set(lasting)

    def _drop_subscription(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            try:
                pubsub.close()
            except Exception:  # pragma: no cover - the connection is broken anyway
                pass
