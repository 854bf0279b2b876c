"""Which endpoint an ``AsyncRPCClient`` call goes to, among several.

One small function, so that another way of choosing (endpoints found through
DNS or Redis, as ``RPCClient`` may come to) can replace it.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence


def choose_endpoint(
    endpoints: Sequence[str],
    refused: Collection[str],
    down_until: Mapping[str, float],
    in_flight: Callable[[str], int],
    now: float,
    turn: int,
) -> str:
    """Return the endpoint with the fewest calls in flight among those not marked down.

    ``refused``: endpoints that refused this client's keys, never tried again
    for this call. Ties go in turn (``turn`` counts calls), so that a light
    load still spreads. When every endpoint is down, the one that failed
    longest ago is tried: it may be back.
    """
    if len(endpoints) == 1:
        return endpoints[0]
    candidates = [e for e in endpoints if e not in refused]
    up = [e for e in candidates if down_until.get(e, 0.0) <= now]
    if not up:
        return min(candidates, key=lambda e: down_until.get(e, 0.0))
    start = turn % len(up)
    return min(up[start:] + up[:start], key=in_flight)
