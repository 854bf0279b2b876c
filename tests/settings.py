"""The demo project's settings plus the probes app, for the tests and the processes they start.

The probes (``echo``, ``sleep``, ``burn_cpu``, ``call_context``, ...) are RPC
functions that only the tests call, so ``./dev demo`` does not serve them.
"""

from testproject.settings import *  # noqa: F403
from testproject.settings import INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "tests.probes", "tests.typed", "tests.identity_probes"]

ROOT_URLCONF = "tests.urls"

# The tests read runrpc's line per call (the library's default shows it only
# with DEBUG on); ZRPC_LOG_CALLS=0 in a process's environment turns it off.
import os  # noqa: E402

ZRPC_LOG_CALLS = os.environ.get("ZRPC_LOG_CALLS", "1") == "1"

# A typed function's result that does not fit its annotation is an error in
# the tests (as with DEBUG on); ZRPC_CHECK_RESULTS=0 makes it a logged warning.
ZRPC_CHECK_RESULTS = os.environ.get("ZRPC_CHECK_RESULTS", "1") == "1"
