"""Signed identity: the user a call is made for, in a short token the server verifies.

A caller that acts for a user sends ``identity``: ``<user>:<expires>:<mac>``,
where the MAC (Django's ``salted_hmac``, salted with this package's name)
covers the function's name, the user's id and the expiry. So a token says
who, for which function, until when; it cannot be moved to another function,
outlive its expiry (``ZRPC_IDENTITY_TTL``, 60 s) or name another user without
the key (``ZRPC_SIGNING_KEY``, by default derived from ``SECRET_KEY``) that the
calling and the serving processes share.

A server admitting CURVE keys may trust some of them to name users without
the shared key (``ZRPC_TRUSTED_USER_KEYS``): their tokens are read, their
expiry checked, their MAC not.

``clock`` is the tokens' own time source: tests move it instead of waiting.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.signals import setting_changed
from django.core.signing import b62_decode, b62_encode, base64_hmac
from django.utils.crypto import constant_time_compare

from django_zrpc import conf
from django_zrpc.exceptions import InvalidIdentity, ZRPCConfigurationError

#: The header key of a call's first event that carries its token.
HEADER = "identity"
#: What every token's MAC is salted with, so that no other signed value of
#: the project (a session, a password reset link) can pass for one.
SALT = "django_zrpc.identity"

#: Seconds since the epoch, as tokens read them: made and checked with it.
clock: Callable[[], float] = time.time

# A token is short: a longer one is not worth a MAC.
_MAX_TOKEN = 300
# An int user id goes as digits, any other (a UUID, a string) after "s".
_USER_RE = re.compile(r"^(-?\d{1,30}|s[^\x00-\x1f]{1,200})$")
_EXPIRES_RE = re.compile(r"^[0-9A-Za-z]{1,12}$")


def encode_user(user_id: int | str) -> str:
    if isinstance(user_id, int) and not isinstance(user_id, bool):
        return str(user_id)
    return f"s{user_id}"


def decode_user(text: str) -> int | str:
    return text[1:] if text.startswith("s") else int(text)


def sign(user_id: int | str, function: str, key: str, ttl: float, now: float) -> str:
    """Return the token that says ``user_id`` calls ``function`` until ``now + ttl``."""
    user = encode_user(user_id)
    expires = b62_encode(int(now + ttl))
    return f"{user}:{expires}:{_mac(key, function, user, expires)}"


def read(token: Any, function: str, keys: list[str] | None, now: float) -> tuple[int | str, float]:
    """Return the user id ``token`` vouches for ``function`` at ``now``, and its expiry.

    Raise ``InvalidIdentity`` for a token that does not stand.

    ``keys`` None: the MAC is not checked (a trusted CURVE key's token).
    """
    if not isinstance(token, str) or len(token) > _MAX_TOKEN or token.count(":") < 2:
        raise InvalidIdentity("The call's identity token is malformed.")
    user, expires, mac = token.rsplit(":", 2)
    if not (_USER_RE.match(user) and _EXPIRES_RE.match(expires)):
        raise InvalidIdentity("The call's identity token is malformed.")
    if keys is not None and not any(
        constant_time_compare(mac, _mac(key, function, user, expires)) for key in keys
    ):
        raise InvalidIdentity(
            f"The call's identity token does not verify for {function!r}: it was signed "
            "with another key or for another function."
        )
    expiry = float(b62_decode(expires))
    if expiry < now:
        raise InvalidIdentity("The call's identity token has expired.")
    return decode_user(user), expiry


def _mac(key: str, function: str, user: str, expires: str) -> str:
    return base64_hmac(SALT, f"{function}:{user}:{expires}", key)


# -- the settings, read once ---------------------------------------------------


class _Keys:
    """The signing key and those that still verify (``SECRET_KEY_FALLBACKS``)."""

    def __init__(self) -> None:
        key = conf.get("SIGNING_KEY") if conf.settings_available() else None
        if key:
            self.signing: str | None = key
            self.verifying = [key]
        elif conf.settings_available() and getattr(settings, "SECRET_KEY", None):
            self.signing = settings.SECRET_KEY
            self.verifying = [settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", [])]
        else:
            self.signing = None
            self.verifying = []
        self.ttl = float(conf.get("IDENTITY_TTL"))
        self.trusted = frozenset(conf.get("TRUSTED_USER_KEYS"))


_keys: _Keys | None = None


def keys() -> _Keys:
    global _keys
    if _keys is None:
        _keys = _Keys()
    return _keys


# -- the caller's tokens and the server's verified ones, kept a while ------------

# (user, function) -> (token, made at, renewed after). A token is good for
# its TTL; reused for half of it, a call costs a dict lookup, not a MAC.
_made: dict[tuple[int | str, str], tuple[str, float, float]] = {}
# (token, function) -> (user id, expiry): tokens already verified.
_verified: dict[tuple[str, str], tuple[int | str, float]] = {}
# Past this many entries a cache starts again: a hostile caller sending new
# tokens must not grow it.
_MAX_CACHED = 4096


def token_for(user_id: int | str, function: str) -> str:
    """Return a token saying ``user_id`` calls ``function``, new or recently made."""
    now = clock()
    cached = _made.get((user_id, function))
    if cached is not None and cached[1] <= now < cached[2]:
        return cached[0]
    config = keys()
    if config.signing is None:
        raise ZRPCConfigurationError(
            "Cannot sign the user of an RPC call: set SECRET_KEY or ZRPC_SIGNING_KEY "
            "in the Django settings of this process."
        )
    token = sign(user_id, function, config.signing, config.ttl, now)
    if len(_made) >= _MAX_CACHED:
        _made.clear()
    _made[user_id, function] = (token, now, now + config.ttl / 2)
    return token


def verified(token: Any, function: str, client_key: str | None) -> tuple[Any, str | None]:
    """Return ``(user id, None)`` for a token that stands, ``(None, why not)`` otherwise.

    No token: ``(None, None)``, an anonymous call.
    """
    if token is None:
        return None, None
    now = clock()
    if type(token) is str:
        cached = _verified.get((token, function))
        if cached is not None and cached[1] >= now:
            return cached[0], None
    config = keys()
    trusted = client_key is not None and client_key in config.trusted
    try:
        user_id, expiry = read(token, function, None if trusted else config.verifying, now)
    except InvalidIdentity as refused:
        return None, refused.args[0]
    if not trusted:
        if len(_verified) >= _MAX_CACHED:
            _verified.clear()
        _verified[token, function] = (user_id, expiry)
    return user_id, None


def _forget(*, setting: str, **kwargs: Any) -> None:
    global _keys
    if setting.startswith("ZRPC_") or setting.startswith("SECRET_KEY"):
        _keys = None
        _made.clear()
        _verified.clear()


setting_changed.connect(_forget, dispatch_uid="django_zrpc.identity")


# -- who a user is -------------------------------------------------------------


def user_id_of(user: Any) -> int | str | None:
    """Return the id to send for ``user``: a user object, its id, or None (anonymous)."""
    if user is None or isinstance(user, int | str):
        return user
    if not getattr(user, "is_authenticated", False):
        return None  # AnonymousUser
    pk = user.pk
    return pk if isinstance(pk, int | str) else str(pk)


def load_user(user_id: int | str | None) -> Any:
    """Return the active user ``user_id`` from this process's database, else ``AnonymousUser``.

    An inactive user is anonymous, as Django's ``ModelBackend`` treats one
    at login: deactivating a user takes their calls' rights away at once.
    """
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import AnonymousUser

    if user_id is None:
        return AnonymousUser()
    model = get_user_model()
    try:
        user = model._default_manager.filter(pk=user_id).first()
    except (ValueError, TypeError):
        user = None  # an id of the wrong shape for this model's key
    if user is None or not getattr(user, "is_active", True):
        return AnonymousUser()
    return user
