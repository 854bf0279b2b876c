from django.apps import AppConfig


class IdentityProbesConfig(AppConfig):
    name = "tests.identity_probes"
    label = "identity_probes"
    default_auto_field = "django.db.models.BigAutoField"
