"""Settings of the demo project, which the tests extend (``tests/settings.py``).

The database comes from ``DATABASE_URL`` (``postgres://user@host:port/name``
or ``sqlite:///path``) and is the embedded SQLite file otherwise. A few
environment variables let the tests start processes the way a deployment
would configure them: ``CONN_MAX_AGE``, ``CONN_HEALTH_CHECKS``,
``DB_APPLICATION_NAME``, ``ZRPC_ENDPOINT``, ``ZRPC_TIMEOUT``,
``ZRPC_LOG_CALLS``, ``SENTRY_DSN`` and ``RAVEN_DSN``.
"""

import os
from pathlib import Path
from urllib.parse import unquote, urlsplit

BASE_DIR = Path(__file__).resolve().parent

SECRET_KEY = "django-insecure-testproject-only"
DEBUG = os.environ.get("DJANGO_DEBUG") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django_zrpc",
    "testproject.tickets",
]

# Gives each request an id, sent with the RPC calls its view makes.
MIDDLEWARE: list[str] = ["django_zrpc.context.RequestContextMiddleware"]
ROOT_URLCONF = "testproject.urls"
USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"


def database_from_url(url: str) -> dict:
    """Return a DATABASES entry for a postgres:// or sqlite:/// URL."""
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": unquote(parts.path[1:])}
    if parts.scheme in ("postgres", "postgresql"):
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": unquote(parts.path[1:]),
            "USER": unquote(parts.username or ""),
            "PASSWORD": unquote(parts.password or ""),
            "HOST": parts.hostname or "",
            "PORT": str(parts.port or ""),
        }
    raise ValueError(f"DATABASE_URL {url!r} is neither postgres:// nor sqlite:///.")


if os.environ.get("DATABASE_URL"):
    DATABASES = {"default": database_from_url(os.environ["DATABASE_URL"])}
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": BASE_DIR / "db.sqlite3",
            # A file, not memory, so that runrpc processes started by the
            # tests see the test database.
            "TEST": {"NAME": BASE_DIR / "test-db.sqlite3"},
        }
    }
DATABASES["default"]["CONN_MAX_AGE"] = int(os.environ.get("CONN_MAX_AGE", "0"))
DATABASES["default"]["CONN_HEALTH_CHECKS"] = os.environ.get("CONN_HEALTH_CHECKS", "1") == "1"
if os.environ.get("DB_APPLICATION_NAME") and "postgresql" in DATABASES["default"]["ENGINE"]:
    DATABASES["default"]["OPTIONS"] = {"application_name": os.environ["DB_APPLICATION_NAME"]}

# The web side: views call the RPC server named by ZRPC_ENDPOINT.
ZRPC_CLIENTS = {
    "default": {
        "ENDPOINTS": os.environ.get("ZRPC_ENDPOINT", "tcp://127.0.0.1:4242").split(","),
        "TIMEOUT": float(os.environ.get("ZRPC_TIMEOUT", "10")),
        "POOL_SIZE": 5,
    }
}

# The benchmarks measure runrpc with and without its per-call log line.
if "ZRPC_LOG_CALLS" in os.environ:  # else the default: a line per call only with DEBUG
    ZRPC_LOG_CALLS = os.environ["ZRPC_LOG_CALLS"] == "1"

if os.environ.get("SENTRY_DSN"):
    import sentry_sdk

    sentry_sdk.init(dsn=os.environ["SENTRY_DSN"], default_integrations=False)

if os.environ.get("RAVEN_DSN"):
    RAVEN_CONFIG = {"dsn": os.environ["RAVEN_DSN"]}
