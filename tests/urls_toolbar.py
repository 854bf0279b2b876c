"""The URLs of ``tests.settings_toolbar``: the admin, the functions page, the toolbar, a page."""

from debug_toolbar.toolbar import debug_toolbar_urls
from django.contrib import admin
from django.contrib.auth.views import LoginView
from django.http import HttpResponse
from django.urls import include, path

from django_zrpc import clients


def three_calls(request):
    """Make three RPC calls (two alike, from one line; a stream) and show their results."""
    client = clients["default"]
    echoed = [client.echo("same") for _ in range(2)]
    counted = list(client.count_up(3))
    return HttpResponse(
        f"<html><head><title>Three calls</title></head><body>"
        f"<h1>Three calls</h1><p id='echoed'>{echoed}</p><p id='counted'>{counted}</p>"
        f"</body></html>"
    )


urlpatterns = [
    path("admin/", admin.site.urls),
    path("rpc/", include("django_zrpc.urls")),
    # A login page for users who are not staff (the admin's refuses them).
    path("accounts/login/", LoginView.as_view(template_name="admin/login.html")),
    path("three-calls/", three_calls),
    path("", include("tests.urls")),
    *debug_toolbar_urls(),
]
