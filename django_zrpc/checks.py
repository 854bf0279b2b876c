"""System checks for the ``ZRPC_*`` settings and the registered functions' contracts.

Imports no socket code: ``manage.py check`` (and every command that runs the
checks) loads neither gevent nor the server. Key files are read, with pyzmq,
only when CURVE is configured.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning
from django.utils.module_loading import import_string

from django_zrpc import conf
from django_zrpc.addrport import parse_addrport
from django_zrpc.client.options import configured_clients, entry_errors
from django_zrpc.exceptions import CurveKeyError, UnsupportedAnnotation


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# name -> (is the value right?, what it must be, check id)
_SIMPLE: dict[str, tuple[Callable[[Any], bool], str, str]] = {
    "HEARTBEAT": (lambda v: _number(v) and v > 0, "a positive number", "E002"),
    "CONCURRENCY": (lambda v: _integer(v) and v > 0, "a positive integer", "E003"),
    "GRACEFUL_TIMEOUT": (
        lambda v: _number(v) and v >= 0,
        "a number of seconds, 0 or more",
        "E006",
    ),
    "LOG_CALLS": (lambda v: v is None or isinstance(v, bool), "None, True or False", "E007"),
    "METRICS": (lambda v: v is None or isinstance(v, bool), "None, True or False", "E018"),
    "BACKLOG": (lambda v: v is None or (_integer(v) and v >= 0), "None or 0 or more", "E009"),
    "MAX_MESSAGE_BYTES": (lambda v: _integer(v) and v > 0, "a positive integer", "E010"),
    "MAX_CONTAINER_LEN": (lambda v: _integer(v) and v > 0, "a positive integer", "E010"),
    "MAX_CONTAINERS": (lambda v: _integer(v) and v > 0, "a positive integer", "E010"),
    "BUILTINS": (lambda v: isinstance(v, bool), "True or False", "E011"),
    "WORKERS": (lambda v: _integer(v) and v > 0, "a positive integer", "E013"),
    "OPS_MAX_CONNECTIONS": (lambda v: _integer(v) and v > 0, "a positive integer", "E017"),
    "OPS_HEADER_TIMEOUT": (lambda v: _number(v) and v > 0, "a positive number", "E017"),
    "OUTLIER_STALL": (
        lambda v: v is None or (_number(v) and v > 0),
        "None or a number of seconds above 0",
        "E020",
    ),
    "OUTLIER_FAILURES": (lambda v: _integer(v) and v > 0, "a positive integer", "E020"),
    "OUTLIER_EJECT_FOR": (
        lambda v: _number(v) and v > 0,
        "a number of seconds above 0",
        "E020",
    ),
    "OUTLIER_MAX_EJECTED": (
        lambda v: _number(v) and 0 <= v <= 1,
        "a share of the endpoints from 0 to 1 (0.5: half; at least one is always allowed)",
        "E020",
    ),
    "RETRY_BUDGET": (
        lambda v: _number(v) and 0 <= v <= 1000,
        "a number of tokens from 0 to 1000 (0: no budget)",
        "E021",
    ),
    "CHECK_RESULTS": (lambda v: v is None or isinstance(v, bool), "None, True or False", "E023"),
    "RETRY_RATIO": (
        lambda v: _number(v) and 0 < v <= 1,
        "a share of a token above 0 and at most 1 (0.1: ten successes pay for one failure)",
        "E021",
    ),
}


def check_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Check every ``ZRPC_*`` setting and return an error for each bad one."""
    errors = [*_check_addrport()]
    for name, (is_valid, expected, id) in _SIMPLE.items():
        value = conf.get(name)
        if not is_valid(value):
            errors.append(
                Error(f"ZRPC_{name} must be {expected}, not {value!r}.", id=f"django_zrpc.{id}")
            )
    traceback_setting = getattr(settings, "ZRPC_SEND_TRACEBACKS", None)
    if traceback_setting is not None and not isinstance(traceback_setting, bool):
        errors.append(
            Error(
                f"ZRPC_SEND_TRACEBACKS must be None, True or False, not {traceback_setting!r}.",
                id="django_zrpc.E011",
            )
        )
    return [
        *errors,
        *_check_opentelemetry(),
        *_check_middleware(),
        *_check_clients(),
        *_check_curve(),
        *_check_announce(),
        *_check_ops(),
        *_check_contracts(),
    ]


def _check_contracts() -> list[CheckMessage]:
    """Check that every typed function's hints can be checked, as runrpc will at startup."""
    from django_zrpc.contracts.validate import Contract
    from django_zrpc.registry import rpc

    found: list[CheckMessage] = []
    for entry in rpc:
        if not entry.validate:
            continue
        try:
            spec = entry.spec
            if spec is not None:
                Contract(spec)
        except UnsupportedAnnotation as err:
            found.append(
                Error(
                    str(err),
                    hint=(
                        "Change the annotation to one a caller can send, or register the "
                        "function with @rpc.register(validate=False) to serve it unchecked."
                    ),
                    obj=entry.qualname,
                    id="django_zrpc.E023",
                )
            )
    return found


def _check_opentelemetry() -> list[CheckMessage]:
    value = conf.get("OPENTELEMETRY")
    if value is not None and not isinstance(value, bool):
        return [
            Error(
                f"ZRPC_OPENTELEMETRY must be None, True or False, not {value!r}.",
                id="django_zrpc.E015",
            )
        ]
    if value and not conf.opentelemetry_installed():
        return [
            Error(
                "ZRPC_OPENTELEMETRY is True, but opentelemetry-api is not installed.",
                hint='pip install "django-zrpc[opentelemetry]", or set ZRPC_OPENTELEMETRY = None.',
                id="django_zrpc.E016",
            )
        ]
    return []


def _check_addrport() -> list[CheckMessage]:
    value = conf.get("ADDRPORT")
    try:
        parse_addrport(value)
    except ValueError as err:
        return [Error(f"ZRPC_ADDRPORT is invalid: {err}", id="django_zrpc.E001")]
    return []


def _check_announce() -> list[CheckMessage]:
    source = conf.get("ANNOUNCE")
    if source is None:
        return []
    from django_zrpc.discovery.redis_registry import announcement_errors

    found = announcement_errors(source, conf.get("ANNOUNCE_ADDRESS"), conf.get("ANNOUNCE_TTL"))
    hint = "See ZRPC_ANNOUNCE in docs/howto/many-hosts.rst."
    return [Error(message, hint=hint, id="django_zrpc.E014") for message in found]


def _check_ops() -> list[CheckMessage]:
    """Check ZRPC_OPS's address, and that metrics asked for can be served."""
    from django_zrpc.metrics import missing_message, server_metrics_wanted

    value = conf.get("OPS")
    if value is not None:
        try:
            parse_addrport(value)
        except ValueError as err:
            return [Error(f"ZRPC_OPS is invalid: {err}", id="django_zrpc.E017")]
    metrics = conf.get("METRICS")
    if metrics is True or server_metrics_wanted(value):
        message = missing_message()
        if message is not None:
            return [
                Error(
                    message,
                    hint="Or set ZRPC_METRICS = False to serve /livez and /readyz alone.",
                    id="django_zrpc.E019",
                )
            ]
    return []


def _check_curve() -> list[CheckMessage]:
    secret_file, allow_dir = conf.get("CURVE_SECRET"), conf.get("CURVE_ALLOW")
    keys = None
    try:
        if secret_file or allow_dir:
            from django_zrpc.curve import server_keys  # reads key files; needs pyzmq

            keys = server_keys(secret_file, allow_dir)
    except CurveKeyError as err:
        return [
            Error(
                str(err),
                hint="Write keys with `manage.py rpckeys DIR NAME`; see 'Securing a deployment'.",
                id="django_zrpc.E012",
            )
        ]
    try:
        addrport = parse_addrport(conf.get("ADDRPORT"))
    except ValueError:
        return []  # E001 says so
    if keys is None and not addrport.is_loopback:
        return [
            Warning(
                f"runrpc listens on {addrport.host} (ZRPC_ADDRPORT), which other machines can "
                "reach, and CURVE is off: anyone who reaches the port can call every function.",
                hint="Set ZRPC_CURVE_SECRET and ZRPC_CURVE_ALLOW; see 'Securing a deployment'.",
                id="django_zrpc.W001",
            )
        ]
    return []


def _check_clients() -> list[CheckMessage]:
    configured = configured_clients()
    if not isinstance(configured, dict):
        return [
            Error(
                f"ZRPC_CLIENTS must be a dict of named clients, not {configured!r}.",
                hint='For example: ZRPC_CLIENTS = {"default": {"ENDPOINTS": ["tcp://127.0.0.1:4242"]}}',
                id="django_zrpc.E008",
            )
        ]
    return [
        Error(message, hint="See ZRPC_CLIENTS in docs/topics/rpcclient.rst.", id="django_zrpc.E008")
        for alias, config in configured.items()
        for message in entry_errors(alias, config)
    ]


def _check_middleware() -> list[CheckMessage]:
    paths = conf.get("MIDDLEWARE")
    if not isinstance(paths, list | tuple) or not all(isinstance(p, str) for p in paths):
        return [
            Error(
                f"ZRPC_MIDDLEWARE must be a list of dotted paths, not {paths!r}.",
                hint=f"For example: ZRPC_MIDDLEWARE = [{conf.DB_MIDDLEWARE!r}]",
                id="django_zrpc.E004",
            )
        ]
    errors: list[CheckMessage] = []
    for path in paths:
        try:
            _check_importable(path)
        except Exception as err:
            errors.append(
                Error(
                    f"ZRPC_MIDDLEWARE entry {path!r} cannot be imported: {err}",
                    hint="Fix the dotted path, or install the package it needs.",
                    id="django_zrpc.E005",
                )
            )
    return errors


#: django_zrpc's own integrations and the package each needs. A check looks
#: the package up rather than importing it: sentry-sdk imports gevent, the
#: OpenTelemetry integration the clients' streams, and neither should load in
#: ``manage.py check`` or a web process before a call is made.
_INTEGRATIONS = {
    conf.SENTRY_MIDDLEWARE: ("sentry_sdk", 'pip install "django-zrpc[sentry]"'),
    conf.OPENTELEMETRY_MIDDLEWARE: ("opentelemetry", 'pip install "django-zrpc[opentelemetry]"'),
    conf.RAVEN_MIDDLEWARE: ("raven", 'pip install "django-zrpc[raven]"'),
}


def _check_importable(path: str) -> None:
    """Raise ImportError if middleware ``path`` cannot be imported; import only the project's."""
    if path not in _INTEGRATIONS:
        import_string(path)
        return
    package, install = _INTEGRATIONS[path]
    if importlib.util.find_spec(package) is None:
        raise ImportError(f"{path} needs {package}, which is not installed: {install}")
