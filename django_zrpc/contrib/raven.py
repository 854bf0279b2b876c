"""Report exceptions raised by RPC functions with raven, Sentry's legacy client.

It is raven's own ``raven.contrib.zerorpc.SentryMiddleware`` with a client built
from ``settings.RAVEN_CONFIG``, adding the RPC name as the ``rpc`` tag. In the
default ``ZRPC_MIDDLEWARE`` whenever ``RAVEN_CONFIG`` is set.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured, MiddlewareNotUsed

try:
    from raven import Client
    from raven.contrib.zerorpc import SentryMiddleware
except ImportError as err:  # pragma: no cover - exercised without the extra
    raise ImproperlyConfigured(
        'django_zrpc.contrib.raven needs raven: pip install "django-zrpc[raven]"'
    ) from err


class RavenMiddleware(SentryMiddleware):
    """raven's zerorpc middleware, configured from ``RAVEN_CONFIG``."""

    def __init__(self) -> None:
        config = getattr(settings, "RAVEN_CONFIG", None)
        if not config:
            raise MiddlewareNotUsed("RAVEN_CONFIG is not set.")
        if not isinstance(config, dict):
            raise ImproperlyConfigured(f"RAVEN_CONFIG must be a dict, not {config!r}.")
        super().__init__(client=Client(**config))

    def server_inspect_exception(
        self, req_event: Any, rep_event: Any, task_ctx: Any, exc_info: Any
    ) -> None:
        client = self._sentry_client
        client.tags_context({"rpc": req_event.name})
        try:
            super().server_inspect_exception(req_event, rep_event, task_ctx, exc_info)
        finally:
            client.context.clear()
