"""System checks for the ``ZRPC_*`` settings."""

from __future__ import annotations

from typing import Any

from django.core.checks import CheckMessage, Error
from django.utils.module_loading import import_string

from django_zrpc import conf
from django_zrpc.addrport import parse_addrport


def check_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Check every ``ZRPC_*`` setting and return an error for each bad one."""
    return [
        *_check_addrport(),
        *_check_positive("HEARTBEAT", conf.get("HEARTBEAT"), "django_zrpc.E002", number=True),
        *_check_positive("CONCURRENCY", conf.get("CONCURRENCY"), "django_zrpc.E003"),
        *_check_grace(),
        *_check_log_calls(),
        *_check_clients(),
        *_check_middleware(),
    ]


def _check_addrport() -> list[CheckMessage]:
    value = conf.get("ADDRPORT")
    try:
        parse_addrport(value)
    except ValueError as err:
        return [Error(f"ZRPC_ADDRPORT is invalid: {err}", id="django_zrpc.E001")]
    return []


def _check_positive(name: str, value: Any, id: str, number: bool = False) -> list[CheckMessage]:
    kinds: tuple[type[int] | type[float], ...] = (int, float) if number else (int,)
    if isinstance(value, bool) or not isinstance(value, kinds) or not value > 0:
        kind = "a positive number" if number else "a positive integer"
        return [Error(f"ZRPC_{name} must be {kind}, not {value!r}.", id=id)]
    return []


def _check_grace() -> list[CheckMessage]:
    value = conf.get("GRACEFUL_TIMEOUT")
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        return [
            Error(
                f"ZRPC_GRACEFUL_TIMEOUT must be a number of seconds, 0 or more, not {value!r}.",
                id="django_zrpc.E006",
            )
        ]
    return []


def _check_log_calls() -> list[CheckMessage]:
    value = conf.get("LOG_CALLS")
    if not isinstance(value, bool):
        return [
            Error(f"ZRPC_LOG_CALLS must be True or False, not {value!r}.", id="django_zrpc.E007")
        ]
    return []


def _check_clients() -> list[CheckMessage]:
    from django.conf import settings

    from django_zrpc.named_clients import client_errors

    configured = getattr(settings, "ZRPC_CLIENTS", {})
    if not isinstance(configured, dict):
        return [
            Error(
                f"ZRPC_CLIENTS must be a dict of named clients, not {configured!r}.",
                hint='For example: ZRPC_CLIENTS = {"default": {"ENDPOINTS": ["tcp://127.0.0.1:4242"]}}',
                id="django_zrpc.E008",
            )
        ]
    return [
        Error(message, hint="See ZRPC_CLIENTS in the README.", id="django_zrpc.E008")
        for alias, config in configured.items()
        for message in client_errors(alias, config)
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
            import_string(path)
        except Exception as err:
            errors.append(
                Error(
                    f"ZRPC_MIDDLEWARE entry {path!r} cannot be imported: {err}",
                    hint="Fix the dotted path, or install the package it needs.",
                    id="django_zrpc.E005",
                )
            )
    return errors
