"""django_zrpc's settings: defaults in one place, read at call time, never at import.

Lookup order for every name: the project's ``settings.ZRPC_<NAME>`` if set,
else the default below. ``ZRPC_MIDDLEWARE``'s default depends on what is
installed and configured, so it is computed when read.

A process with no Django settings at all (a cron job, a notebook, another
project's Celery worker calling with ``RPCClient``) gets the defaults: the
clients never make a caller configure Django first.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Any

from django.conf import ENVIRONMENT_VARIABLE, settings

DEFAULTS: dict[str, Any] = {
    # Where `runrpc` listens when no addrport is given (runserver's grammar).
    "ADDRPORT": "127.0.0.1:4242",
    # Seconds between zerorpc heartbeats; a peer silent for 2 periods is lost.
    "HEARTBEAT": 5.0,
    # The most calls served at once; each may hold one database connection.
    "CONCURRENCY": 100,
    # Processes serving the address; past 1, runrpc supervises them.
    "WORKERS": 1,
    # Calls that may wait for a worker; past them a call gets ServerBusy at
    # once. None: as many as CONCURRENCY.
    "BACKLOG": None,
    # Limits on one incoming event: its size, the items of one array or map,
    # and (for events over 64 KiB) the arrays and maps in it altogether.
    "MAX_MESSAGE_BYTES": 16 * 1024 * 1024,
    "MAX_CONTAINER_LEN": 100_000,
    "MAX_CONTAINERS": 100_000,
    # Whether error replies carry the server's traceback (it can show paths,
    # hosts and DSNs). None: only with DEBUG = True.
    "SEND_TRACEBACKS": None,
    # Whether zerorpc's built-ins (_zerorpc_list, _zerorpc_inspect, ...) answer.
    "BUILTINS": True,
    # Seconds a stopping server gives running calls before ending them.
    "GRACEFUL_TIMEOUT": 10.0,
    # One INFO line per successful call (errors and lost callers are always
    # logged). It costs about as much server CPU as the rest of an echo call
    # (~20 us), so None means "only with DEBUG = True": a developer sees every
    # call, production keeps its visibility through the metrics.
    "LOG_CALLS": None,
    # runrpc's ops endpoint (runserver's addrport grammar): /livez, /readyz
    # and /metrics over HTTP. None: not served unless --ops is given.
    "OPS": None,
    # The ops endpoint's connections at most (lowered to an eighth of the
    # open-file limit, so that descriptors remain for RPC), and the seconds a
    # connection has to send a request's head before it is closed.
    "OPS_MAX_CONNECTIONS": 64,
    "OPS_HEADER_TIMEOUT": 5.0,
    # Prometheus metrics: None means on wherever they can be read, i.e. the
    # server's when the ops endpoint is served and the client's when
    # prometheus_client is installed; True insists (an error without it);
    # False: none.
    "METRICS": None,
    # Name reported by _zerorpc_name and _zerorpc_ping; None: the project's.
    "SERVER_NAME": None,
    # Dotted paths of server middleware; None: see default_middleware().
    "MIDDLEWARE": None,
    # CURVE: the server's NAME.key_secret file, and the folder whose *.key
    # files are the public keys of the clients it admits. Both or neither.
    "CURVE_SECRET": None,
    "CURVE_ALLOW": None,
    # Signed identity (docs/identity.rst): the key that signs and verifies the
    # user a call is made for (None: one derived from SECRET_KEY), the seconds
    # a token lives, the CURVE key names trusted to name a user unsigned, and
    # CURVE key name -> the functions (fnmatch patterns) that key may call.
    "SIGNING_KEY": None,
    "IDENTITY_TTL": 60.0,
    "TRUSTED_USER_KEYS": [],
    "KEY_FUNCTIONS": {},
    # A Redis URL with ?service=NAME to announce this server in (runrpc
    # --announce), the address callers should dial (None: the one listened
    # on), and the seconds an announcement lives unless refreshed.
    "ANNOUNCE": None,
    "ANNOUNCE_ADDRESS": None,
    "ANNOUNCE_TTL": 10.0,
    # OpenTelemetry spans and trace context for every call: True,
    # False, or None: on whenever opentelemetry-api is installed.
    "OPENTELEMETRY": None,
    # Outlier ejection in RPCClient and AsyncRPCClient (docs/howto/many-hosts.rst).
    # Seconds an endpoint with calls sent may go without answering any while
    # the others answer before it is ejected (None: never for that alone);
    # timeouts in a row that eject it; the base seconds of an ejection (times
    # the endpoint's recent ejections, at most 300); and the share of the
    # endpoints that may be ejected at once (at least one of two or more).
    "OUTLIER_STALL": 0.5,
    "OUTLIER_FAILURES": 5,
    "OUTLIER_EJECT_FOR": 10.0,
    "OUTLIER_MAX_EJECTED": 0.5,
    # The retry budget of each client and endpoint (gRPC's retry throttling):
    # tokens a full bucket holds (0: no budget, every refusal is retried), and
    # the share of a token each success gives back; each failure takes one,
    # and calls are retried only while more than half are left.
    "RETRY_BUDGET": 100,
    "RETRY_RATIO": 0.1,
    # Whether a typed function's result that does not fit its return
    # annotation is an error (InvalidResult, to the caller) or only logged,
    # once per function. None: an error with DEBUG = True (and in tests).
    "CHECK_RESULTS": None,
}

DB_MIDDLEWARE = "django_zrpc.middleware.CloseOldConnectionsMiddleware"
SENTRY_MIDDLEWARE = "django_zrpc.contrib.sentry.SentryMiddleware"
RAVEN_MIDDLEWARE = "django_zrpc.contrib.raven.RavenMiddleware"
OPENTELEMETRY_MIDDLEWARE = "django_zrpc.contrib.opentelemetry.OpenTelemetryMiddleware"


def get(name: str) -> Any:
    """Return the setting ``ZRPC_<name>`` or its default."""
    if name not in DEFAULTS:
        raise KeyError(f"{name!r} is not a django_zrpc setting; known: {', '.join(DEFAULTS)}.")
    there = settings_available()
    value = getattr(settings, f"ZRPC_{name}", DEFAULTS[name]) if there else DEFAULTS[name]
    if name == "MIDDLEWARE" and value is None:
        return default_middleware()
    if name == "SERVER_NAME" and value is None:
        return (settings.SETTINGS_MODULE if there else None) or "django_zrpc"
    if name in ("SEND_TRACEBACKS", "LOG_CALLS", "CHECK_RESULTS") and value is None:
        return settings.DEBUG if there else False
    return value


def settings_available() -> bool:
    """Return whether this process has Django settings to read.

    Configured by hand (``settings.configure()``) or named by
    DJANGO_SETTINGS_MODULE, which Django loads on the first read: a script
    that names its settings but has not read one yet has them too.
    """
    return settings.configured or bool(os.environ.get(ENVIRONMENT_VARIABLE))


def default_middleware() -> list[str]:
    """Return the middleware used when ``ZRPC_MIDDLEWARE`` is not set.

    The database middleware always; OpenTelemetry's when tracing is on (see
    ``opentelemetry_enabled``); Sentry's when sentry-sdk is installed (it
    switches itself off unless ``sentry_sdk.init()`` ran); raven's when
    ``RAVEN_CONFIG`` is set.
    """
    middleware = [DB_MIDDLEWARE]
    if opentelemetry_enabled() and opentelemetry_installed():  # else check E016 says why
        middleware.append(OPENTELEMETRY_MIDDLEWARE)
    if importlib.util.find_spec("sentry_sdk") is not None:
        middleware.append(SENTRY_MIDDLEWARE)
    if settings_available() and getattr(settings, "RAVEN_CONFIG", None):
        middleware.append(RAVEN_MIDDLEWARE)
    return middleware


def opentelemetry_enabled() -> bool:
    """Return whether calls are traced: ``ZRPC_OPENTELEMETRY``, or if None, if OTel is installed.

    Without Django settings (a plain script) only the API's presence counts.
    Looked up without importing OpenTelemetry, which only the integration does.
    """
    value = get("OPENTELEMETRY")
    if value is None:
        return opentelemetry_installed()
    return bool(value)


def opentelemetry_installed() -> bool:
    """Return whether opentelemetry-api is installed."""
    return importlib.util.find_spec("opentelemetry") is not None
