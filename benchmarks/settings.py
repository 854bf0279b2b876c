"""Settings of every Django process of the benchmarks: servers, clients and the web side.

The test project's settings, serving what the benchmarks call: ``echo`` from
their own app, ``get_ticket`` and ``ticket_list`` from the tickets app. The
test suite's functions are not installed, so that the benchmarks do not
depend on where those live (issue 12).
"""

import os

from testproject.settings import *  # noqa: F403
from testproject.settings import ZRPC_CLIENTS

# Listed, not added to the test project's list: an app there that registers
# its own echo would make the name registered twice, which is an error.
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django_zrpc",
    "testproject.tickets",
    "benchmarks.functions",
]

# The HTTP row: benchmarks.web's echo views and the test project's ticket view,
# calling runrpc through RPCClient's default pool, as in the RPCClient rows.
# ZRPC_BENCH_URLCONF: other views (the rows' ceilings, benchmarks.web_bare).
ROOT_URLCONF = os.environ.get("ZRPC_BENCH_URLCONF", "benchmarks.web")
ZRPC_CLIENTS = {"default": {**ZRPC_CLIENTS["default"], "POOL_SIZE": 10, "TIMEOUT": 30.0}}
