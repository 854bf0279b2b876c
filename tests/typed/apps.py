from django.apps import AppConfig


class TypedConfig(AppConfig):
    name = "tests.typed"
    label = "typed"
