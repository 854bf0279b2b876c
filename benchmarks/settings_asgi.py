"""The benchmark's settings for its ASGI row: async views (``benchmarks.web_asgi``).

``ZRPC_BENCH_URLCONF`` names other views, as in ``benchmarks.settings``.
"""

import os

from benchmarks.settings import *  # noqa: F403

ROOT_URLCONF = os.environ.get("ZRPC_BENCH_URLCONF", "benchmarks.web_asgi")
