"""The latency buckets every histogram of the package uses, in a module of its own.

``metrics/__init__`` imports ``metrics.server`` and ``metrics.exposition``
inside functions, so that prometheus_client loads only when metrics are kept;
the buckets live here so that those modules need nothing from the package's
``__init__`` and no import goes round in a circle.
"""

#: Latency buckets, in seconds, for calls that take a millisecond or so and
#: for the few that take seconds.
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
