from django.urls import path

from tests.identity_probes import views

urlpatterns = [
    path("whoami/", views.whoami),
    path("awhoami/", views.awhoami),
]
