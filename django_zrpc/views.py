"""The functions page: every registered function of the project, in the admin's look, for staff.

    urlpatterns = [path("rpc/", include("django_zrpc.urls")), ...]

Name, signature with its types, docstring, stream or not, deprecation, what
it requires (login, permissions) and, where the contracts give one, its
parameters' schema. With ``DEBUG = True`` a form tries a function against one
of ``ZRPC_CLIENTS``' endpoints. An anonymous visitor is sent to log in; a
user who is not staff is refused (403).
"""

from __future__ import annotations

import importlib
import inspect
import json
from typing import Any

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import NoReverseMatch, reverse
from django.views.decorators.csrf import csrf_protect

from django_zrpc.registry import RPCFunction, rpc

#: Stream items the try form shows at most.
MAX_ITEMS = 100


def _login_url() -> str:
    """The admin's login page when the admin is installed, else ``LOGIN_URL``."""
    try:
        return reverse("admin:login")
    except NoReverseMatch:
        return str(settings.LOGIN_URL)


def _admin_context(request: HttpRequest) -> dict[str, Any]:
    """What admin/base_site.html reads (site header, the user's links), if the admin is there."""
    try:
        from django.contrib import admin

        return admin.site.each_context(request)
    except (ImportError, RuntimeError, NoReverseMatch):
        return {}


def _requirements(entry: RPCFunction) -> list[str]:
    """What a caller needs for ``entry``, in words (registry flags that may not exist yet)."""
    needs = []
    if getattr(entry, "login_required", False):
        needs.append("login")
    permissions = getattr(entry, "permission_required", ()) or ()
    if isinstance(permissions, str):
        permissions = (permissions,)
    needs.extend(f"permission {permission}" for permission in permissions)
    return needs


def _schemas() -> dict[str, Any]:
    """Each function's OpenRPC method by name, when ``contracts.schema`` exists; else empty."""
    try:
        schema = importlib.import_module("django_zrpc.contracts.schema")
        specs = []
        for entry in rpc:
            try:
                spec = entry.spec
            except Exception:  # an annotation it cannot read: no schema for this one
                continue
            if spec is not None:
                specs.append(spec)
        document = schema.openrpc_document(specs)
    except Exception:  # absent, or not the shape this page knows: the page goes on without
        return {}
    components = document.get("components", {}).get("schemas", {})
    found = {}
    for method in document.get("methods", []):
        shown = {"params": method.get("params", []), "result": method.get("result")}
        if components:
            shown["components"] = components
        found[method["name"]] = json.dumps(shown, indent=2, default=str)
    return found


def _describe(entry: RPCFunction, schemas: dict[str, Any]) -> dict[str, Any]:
    try:
        # Hints as types, not as the strings of `from __future__ import annotations`.
        signature = str(inspect.signature(entry.func, eval_str=True))
    except Exception:  # a hint that names what is not importable here
        try:
            signature = str(inspect.signature(entry.func))
        except (TypeError, ValueError):
            signature = "(...)"
    return {
        "name": entry.name,
        "signature": signature,
        "doc": inspect.getdoc(entry.func) or "",
        "qualname": entry.qualname,
        "stream": entry.stream,
        "blocking": entry.blocking,
        "deprecated": entry.deprecated,
        "requires": _requirements(entry),
        "schema": schemas.get(entry.name),
    }


def _try_call(data: Any) -> dict[str, Any]:
    """Call the function the form names, on the endpoint it names; say what came back."""
    tried: dict[str, Any] = {
        "function": data.get("function", ""),
        "client": data.get("client", ""),
        "arguments": data.get("arguments", "[]"),
        "keywords": data.get("keywords", "{}"),
    }
    try:
        args = json.loads(tried["arguments"] or "[]")
        kwargs = json.loads(tried["keywords"] or "{}")
        if not isinstance(args, list) or not isinstance(kwargs, dict):
            raise ValueError("arguments must be a JSON list, keywords a JSON object")
        if tried["client"] not in getattr(settings, "ZRPC_CLIENTS", {}):
            raise ValueError(f"{tried['client']!r} is not a client of ZRPC_CLIENTS")
        from django_zrpc.client.gevent.named_clients import clients

        result = clients[tried["client"]].call(tried["function"], *args, kwargs=kwargs)
        if not isinstance(result, (dict, list, str, bytes)) and hasattr(result, "__next__"):
            items = []
            for item in result:
                items.append(item)
                if len(items) >= MAX_ITEMS:
                    break
            result = items
        tried["result"] = json.dumps(result, indent=2, default=str)
    except Exception as err:
        tried["error"] = f"{getattr(err, 'name', None) or type(err).__name__}: {err}"
    return tried


@csrf_protect
def functions(request: HttpRequest) -> HttpResponse:
    """List the project's registered functions; with DEBUG, try one (POST)."""
    if not request.user.is_authenticated:
        return redirect_to_login(request.get_full_path(), _login_url())
    if not request.user.is_staff:
        raise PermissionDenied("The RPC functions page is for staff only.")
    tried = None
    if request.method == "POST":
        if not settings.DEBUG:
            raise PermissionDenied("Functions can be tried only with DEBUG = True.")
        tried = _try_call(request.POST)
    schemas = _schemas()
    context = {
        **_admin_context(request),
        "title": "RPC functions",
        "functions": [_describe(entry, schemas) for entry in rpc],
        "debug": settings.DEBUG,
        "client_aliases": list(getattr(settings, "ZRPC_CLIENTS", {})),
        "tried": tried,
    }
    return render(request, "django_zrpc/functions.html", context)
