from django.apps import AppConfig


class ProbesConfig(AppConfig):
    name = "tests.probes"
    label = "probes"
