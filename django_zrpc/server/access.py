"""Whether a call may run: its identity token, its caller's key, its function's requirements.

Decided once per call, after the function is found and before anything else
reads its arguments, so that a caller refused learns nothing of the
function's contract. In order: a token that does not stand; a CURVE key
calling outside its ``ZRPC_KEY_FUNCTIONS``; ``login_required``;
``permission_required`` (``user.has_perms``, so groups and the project's
authentication backends count); ``allow(call)``. A refusal raises Django's
``PermissionDenied``, saying what was missing and nothing else, is logged
with the function, the caller's key and user, and counted by the observer.
"""

from __future__ import annotations

import fnmatch
import logging
from typing import Any

from django.core.exceptions import PermissionDenied
from django.core.signals import setting_changed

from django_zrpc import conf
from django_zrpc.context import CallContext
from django_zrpc.registry import RPCFunction, rpc
from django_zrpc.server.observer import Observer

logger = logging.getLogger("django_zrpc.server")

#: The reasons a call is refused for, as the log and the metrics name them.
IDENTITY = "identity"
KEY = "key"
LOGIN = "login"
PERMISSION = "permission"
ALLOW = "allow"

# CURVE key name -> the patterns of the functions it may call; None: unread.
_key_functions: dict[str, tuple[str, ...]] | None = None


def check(context: CallContext, observer: Observer) -> None:
    """Raise ``PermissionDenied`` if the call of ``context`` may not run; log and count why."""
    name = context.function
    entry = rpc.get(name)  # None: a built-in, or a function of another registry
    limits = _key_functions if _key_functions is not None else _read_key_functions()
    if context.identity_error is None and not limits and (entry is None or not _needs(entry)):
        return  # most calls: nothing to decide
    refusal = _refusal(context, entry, limits)
    if refusal is None:
        return
    reason, message = refusal
    logger.warning(
        "rpc %s refused (%s): %s [key %s, user %s]",
        name,
        reason,
        message,
        context.client_key or "-",
        "-" if context.user_id is None else context.user_id,
    )
    observer.call_denied(name, reason)
    raise PermissionDenied(message)


def _needs(entry: RPCFunction) -> bool:
    return entry.login_required or bool(entry.permission_required) or entry.allow is not None


def _refusal(
    context: CallContext, entry: RPCFunction | None, limits: dict[str, tuple[str, ...]]
) -> tuple[str, str] | None:
    name = context.function
    if context.identity_error is not None:
        return IDENTITY, context.identity_error
    key = context.client_key
    # Built-ins (_zerorpc_name, ...) stay open: the clients ask them first.
    if key is not None and key in limits and not name.startswith("_"):
        if not any(fnmatch.fnmatchcase(name, pattern) for pattern in limits[key]):
            return KEY, f"The caller's key {key!r} may not call {name!r}."
    if entry is None:
        return None
    if entry.login_required and not context.user.is_authenticated:
        return LOGIN, f"{name!r} needs a logged-in, active user; the call is anonymous."
    if entry.permission_required and not context.user.has_perms(entry.permission_required):
        needed = ", ".join(entry.permission_required)
        return PERMISSION, f"{name!r} needs the permission {needed}."
    if entry.allow is not None:
        try:
            allowed = entry.allow(context)
        except PermissionDenied as denied:
            return ALLOW, str(denied) or f"{name!r} refused this call."
        if not allowed:
            return ALLOW, f"{name!r} refused this call."
    return None


def _read_key_functions() -> dict[str, tuple[str, ...]]:
    global _key_functions
    _key_functions = {
        key: tuple(patterns) for key, patterns in (conf.get("KEY_FUNCTIONS") or {}).items()
    }
    return _key_functions


def _forget(*, setting: str, **kwargs: Any) -> None:
    global _key_functions
    if setting.startswith("ZRPC_"):
        _key_functions = None


setting_changed.connect(_forget, dispatch_uid="django_zrpc.server.access")
