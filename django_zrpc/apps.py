from django.apps import AppConfig
from django.core import checks
from django.utils.module_loading import autodiscover_modules


class DjangoZrpcConfig(AppConfig):
    name = "django_zrpc"
    verbose_name = "django-zrpc"

    def ready(self) -> None:
        from django_zrpc.checks import check_settings

        checks.register(check_settings, "django_zrpc")
        # Import every installed app's rpcs.py. An app without one is skipped;
        # an rpcs.py that fails to import re-raises: autodiscover_modules only
        # swallows the error when the app has no rpcs submodule at all.
        autodiscover_modules("rpcs")
