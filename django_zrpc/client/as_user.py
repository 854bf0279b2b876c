"""``client.as_user(user)``: the same client, its calls made for one user.

Where no request says who is asking (a Celery task, a management command, a
script), a call names its user this way. The bound client shares everything
with the client it came from (pools, balancer, options): making one costs an
object, so one per task or per user is fine. Its calls carry the user's
signed identity (``django_zrpc.identity``) instead of the request's, or
none for ``as_user(None)`` or an ``AnonymousUser``.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

from django_zrpc import context, identity


class _Bound:
    def __init__(self, client: Any, user: Any) -> None:
        self.client = client
        self.user_id = identity.user_id_of(user)

    def as_user(self, user: Any) -> Any:
        return type(self)(self.client, user)

    def __getattr__(self, name: str) -> Any:
        # The client's own attributes (endpoints, close...) are its own; any
        # other name is a remote function's, called for the bound user.
        try:
            inspect.getattr_static(self.client, name)
        except AttributeError:
            return functools.partial(self.call, name)
        return getattr(self.client, name)

    def __call__(self, name: str, /, *args: Any, **kwargs: Any) -> Any:
        return self.call(name, *args, **kwargs)

    def call(self, name: str, /, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} of {self.client!r} for user {self.user_id!r}>"


class UserClient(_Bound):
    """``RPCClient.as_user(user)``: calls made for ``user``."""

    def call(self, name: str, /, *args: Any, **kwargs: Any) -> Any:
        token = context.act_as(self.user_id)
        try:
            return self.client.call(name, *args, **kwargs)
        finally:
            context.stop_acting(token)


class AsyncUserClient(_Bound):
    """``AsyncRPCClient.as_user(user)``: calls made for ``user``."""

    async def call(self, name: str, /, *args: Any, **kwargs: Any) -> Any:
        token = context.act_as(self.user_id)
        try:
            return await self.client.call(name, *args, **kwargs)
        finally:
            context.stop_acting(token)


class ActsAsUser:
    """Give a client ``as_user(user)``."""

    def as_user(self, user: Any) -> UserClient:
        """Return this client, its calls made for ``user`` (a user, an id, or None: anonymous)."""
        return UserClient(self, user)


class AsyncActsAsUser:
    """Give an asyncio client ``as_user(user)``."""

    def as_user(self, user: Any) -> AsyncUserClient:
        """Return this client, its calls made for ``user`` (a user, an id, or None: anonymous)."""
        return AsyncUserClient(self, user)
