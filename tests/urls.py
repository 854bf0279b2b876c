"""The test project's URLs, and the probes' async views."""

from django.urls import include, path

from tests.probes import views

urlpatterns = [
    path("", include("testproject.urls")),
    path("probes/call_context/", views.call_context),
    path("probes/sleep/", views.sleep),
]
