"""The functions page's rules in-process: who may see it, the try form, what each function shows.

The browser tests (test_devtools_browser.py) show the page as a user sees it;
these pin what a browser cannot easily reach: CSRF, ``DEBUG = False``, and the
fields that other parts of the project add (requirements, the schema).
"""

from __future__ import annotations

import sys
import types
from dataclasses import dataclass
from typing import Any

import pytest
from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import PermissionDenied
from django.test import RequestFactory, override_settings

from django_zrpc import views
from django_zrpc.registry import RPCFunction
from tests.settings_toolbar import INSTALLED_APPS, TEMPLATES

STATICFILES = "django.contrib.staticfiles"

PAGE = override_settings(
    INSTALLED_APPS=[a for a in INSTALLED_APPS if a not in ("debug_toolbar", STATICFILES)],
    TEMPLATES=TEMPLATES,
    ROOT_URLCONF="tests.urls_admin",
    DEBUG=False,
)


@dataclass
class _User:
    is_staff: bool
    is_authenticated: bool = True
    is_active: bool = True
    pk: int = 1

    def has_module_perms(self, app_label: str) -> bool:
        return False

    def get_username(self) -> str:
        return "someone"


def _get(user: Any, method: str = "get", **data: str) -> Any:
    request = getattr(RequestFactory(), method)("/rpc/", data)
    request.user = user
    request._dont_enforce_csrf_checks = method == "get"
    return views.functions(request)


@PAGE
def test_anonymous_visitors_are_sent_to_the_admins_login():
    response = _get(AnonymousUser())
    assert response.status_code == 302
    assert response["Location"] == "/admin/login/?next=/rpc/"


@PAGE
def test_users_who_are_not_staff_are_refused():
    with pytest.raises(PermissionDenied, match="staff only"):
        _get(_User(is_staff=False))


@PAGE
def test_staff_see_every_function_with_its_docstring():
    html = _get(_User(is_staff=True)).content.decode()
    assert 'id="function-get_ticket"' in html
    assert "Return one ticket by id." in html
    assert 'id="zrpc-try-form"' not in html  # DEBUG is off


@PAGE
def test_the_try_form_needs_debug_and_a_csrf_token():
    staff = _User(is_staff=True)
    request = RequestFactory().post("/rpc/", {"function": "echo"})
    request.user = staff
    request._dont_enforce_csrf_checks = True
    with pytest.raises(PermissionDenied, match="DEBUG"):
        views.functions(request)
    with override_settings(DEBUG=True):
        # No token: Django's CSRF check refuses the POST before the view runs.
        assert _get(staff, "post", function="echo").status_code == 403


def test_a_function_shows_what_it_requires_and_its_schema(monkeypatch):
    def place_order(lines: list[str], size: str = "M") -> int:
        """Place an order."""
        return 1

    entry = RPCFunction("place_order", place_order, deprecated="use place_order_v2")
    # The registry's login and permission flags, read where they exist.
    object.__setattr__(entry, "login_required", True)
    object.__setattr__(entry, "permission_required", ("shop.add_order",))
    schema = types.ModuleType("django_zrpc.contracts.schema")
    schema.openrpc_document = lambda specs: {  # type: ignore[attr-defined]
        "methods": [{"name": s.name, "params": [{"name": "lines"}]} for s in specs],
        "components": {"schemas": {}},
    }
    monkeypatch.setitem(sys.modules, "django_zrpc.contracts.schema", schema)
    monkeypatch.setattr(views, "rpc", [entry])
    (shown,) = [views._describe(e, views._schemas()) for e in views.rpc]
    assert shown["signature"] == "(lines: list[str], size: str = 'M') -> int"
    assert shown["requires"] == ["login", "permission shop.add_order"]
    assert shown["deprecated"] == "use place_order_v2"
    assert '"name": "lines"' in shown["schema"]
