"""The tests' settings with the admin, sessions and django-debug-toolbar with ``RPCPanel``.

For the developer tools' tests only (a web process of their own), so that the
rest of the suite runs without the toolbar's middleware.
"""

from tests.settings import *  # noqa: F403
from tests.settings import INSTALLED_APPS, MIDDLEWARE

DEBUG = True
INTERNAL_IPS = ["127.0.0.1"]

INSTALLED_APPS = [
    "django.contrib.admin",
    *INSTALLED_APPS,
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "debug_toolbar",
]

MIDDLEWARE = [
    "debug_toolbar.middleware.DebugToolbarMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    *MIDDLEWARE,
]

ROOT_URLCONF = "tests.urls_toolbar"
STATIC_URL = "static/"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DEBUG_TOOLBAR_PANELS = [
    "debug_toolbar.panels.timer.TimerPanel",
    "debug_toolbar.panels.sql.SQLPanel",
    "django_zrpc.contrib.debug_toolbar.RPCPanel",
]
DEBUG_TOOLBAR_CONFIG = {
    # The toolbar refuses to run under a test runner unless told; these
    # processes are the web servers the tests drive, not the tests.
    "IS_RUNNING_TESTS": False,
    # Open at once, so that a browser finds the panel without a click on "hide".
    "SHOW_COLLAPSED": False,
}
