"""The benchmark's settings for its ASGI row: async views (``benchmarks.web_asgi``)."""

from benchmarks.settings import *  # noqa: F403

ROOT_URLCONF = "benchmarks.web_asgi"
