"""The tests' settings with the OpenTelemetry SDK on: a runrpc process keeps its spans in memory."""

from tests import otel
from tests.settings import *  # noqa: F403

otel.install()
