"""The system checks of the signed-identity settings (``django_zrpc.E024``-``E026``)."""

from __future__ import annotations

from typing import Any

from django.core.checks import CheckMessage, Error

from django_zrpc import conf


def check_identity_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Return an error for each bad ``ZRPC_SIGNING_KEY``, ``ZRPC_IDENTITY_TTL``, key setting."""
    errors: list[CheckMessage] = []
    key = conf.get("SIGNING_KEY")
    if key is not None and not (isinstance(key, str) and len(key) >= 32):
        errors.append(
            Error(
                f"ZRPC_SIGNING_KEY must be None or a string of 32 characters or more, "
                f"not {_shown(key)}.",
                hint="Leave it unset to derive one from SECRET_KEY, or set the same long "
                "random string (e.g. django.core.management.utils.get_random_secret_key()) "
                "in every process that calls or serves for users.",
                id="django_zrpc.E024",
            )
        )
    ttl = conf.get("IDENTITY_TTL")
    if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not 0 < ttl <= 86400:
        errors.append(
            Error(
                f"ZRPC_IDENTITY_TTL must be a number of seconds above 0 and at most 86400, "
                f"not {ttl!r}.",
                hint="The seconds a call's signed user stays valid; 60 is the default.",
                id="django_zrpc.E025",
            )
        )
    return [*errors, *_check_keys()]


def _check_keys() -> list[CheckMessage]:
    errors: list[CheckMessage] = []
    trusted = conf.get("TRUSTED_USER_KEYS")
    if not isinstance(trusted, list | tuple) or not all(isinstance(k, str) for k in trusted):
        errors.append(
            Error(
                f"ZRPC_TRUSTED_USER_KEYS must be a list of CURVE key names, not {trusted!r}.",
                hint="Name the clients' keys as their files in ZRPC_CURVE_ALLOW, without "
                '.key: ZRPC_TRUSTED_USER_KEYS = ["web"].',
                id="django_zrpc.E026",
            )
        )
    functions = conf.get("KEY_FUNCTIONS")
    if not isinstance(functions, dict) or not all(
        isinstance(k, str) and isinstance(v, list | tuple) and all(isinstance(p, str) for p in v)
        for k, v in functions.items()
    ):
        errors.append(
            Error(
                f"ZRPC_KEY_FUNCTIONS must map CURVE key names to lists of function names "
                f"or patterns, not {functions!r}.",
                hint='For example ZRPC_KEY_FUNCTIONS = {"reports": ["report_*", "ping"]}.',
                id="django_zrpc.E026",
            )
        )
    return errors


def _shown(key: object) -> str:
    # A wrong key may still be half a secret: say its type and length only.
    if isinstance(key, str):
        return f"a string of {len(key)} characters"
    return repr(type(key).__name__)
