"""The admin and the functions page alone, for in-process tests that install the admin."""

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("rpc/", include("django_zrpc.urls")),
]
