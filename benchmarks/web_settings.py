"""The test project's settings, with the benchmark's views and RPCClient's default pool."""

from testproject.settings import *  # noqa: F403
from testproject.settings import ZRPC_CLIENTS

ROOT_URLCONF = "benchmarks.web"
ZRPC_CLIENTS["default"]["POOL_SIZE"] = 10  # RPCClient's default, as in the RPCClient rows
ZRPC_CLIENTS["default"]["TIMEOUT"] = 30.0
