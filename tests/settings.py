"""The demo project's settings plus the probes app, for the tests and the processes they start.

The probes (``echo``, ``sleep``, ``burn_cpu``, ``call_context``, ...) are RPC
functions that only the tests call, so ``./dev demo`` does not serve them.
"""

from testproject.settings import *  # noqa: F403
from testproject.settings import INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "tests.probes"]

ROOT_URLCONF = "tests.urls"
