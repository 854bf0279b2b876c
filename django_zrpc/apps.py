from django.apps import AppConfig
from django.core import checks


class DjangoZrpcConfig(AppConfig):
    name = "django_zrpc"
    verbose_name = "django-zrpc"

    def ready(self) -> None:
        from django_zrpc.autodiscovery import autodiscover, check_rpcs_modules
        from django_zrpc.checks import check_settings
        from django_zrpc.identity_checks import check_identity_settings

        checks.register(check_settings, "django_zrpc")
        checks.register(check_identity_settings, "django_zrpc")
        checks.register(check_rpcs_modules, "django_zrpc")
        # Import every installed app's rpcs.py. One that fails to import does
        # not stop Django: its error is raised where the functions are needed,
        # so that runrpc's autoreloader can wait for the fix.
        autodiscover()
