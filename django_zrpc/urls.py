"""The functions page's URL: ``path("rpc/", include("django_zrpc.urls"))``."""

from django.urls import path

from django_zrpc import views

app_name = "django_zrpc"

urlpatterns = [
    path("", views.functions, name="functions"),
]
