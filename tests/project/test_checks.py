import pytest
from django.test import override_settings

from django_zrpc import conf
from django_zrpc.checks import check_settings


def ids(messages):
    return [m.id for m in messages]


def test_default_settings_pass():
    assert check_settings() == []


@pytest.mark.parametrize(
    ("setting", "value", "error_id"),
    [
        ("ZRPC_ADDRPORT", "nope", "django_zrpc.E001"),
        ("ZRPC_HEARTBEAT", 0, "django_zrpc.E002"),
        ("ZRPC_HEARTBEAT", "5", "django_zrpc.E002"),
        ("ZRPC_CONCURRENCY", 0, "django_zrpc.E003"),
        ("ZRPC_CONCURRENCY", 2.5, "django_zrpc.E003"),
        ("ZRPC_CONCURRENCY", True, "django_zrpc.E003"),
        (
            "ZRPC_MIDDLEWARE",
            "django_zrpc.middleware.CloseOldConnectionsMiddleware",
            "django_zrpc.E004",
        ),
        ("ZRPC_MIDDLEWARE", ["no.such.Middleware"], "django_zrpc.E005"),
        ("ZRPC_GRACEFUL_TIMEOUT", -1, "django_zrpc.E006"),
        ("ZRPC_GRACEFUL_TIMEOUT", "10", "django_zrpc.E006"),
        ("ZRPC_LOG_CALLS", "yes", "django_zrpc.E007"),
        ("ZRPC_BACKLOG", -1, "django_zrpc.E009"),
        ("ZRPC_MAX_MESSAGE_BYTES", 0, "django_zrpc.E010"),
        ("ZRPC_MAX_CONTAINER_LEN", "100", "django_zrpc.E010"),
        ("ZRPC_MAX_CONTAINERS", None, "django_zrpc.E010"),
        ("ZRPC_BUILTINS", 1, "django_zrpc.E011"),
        ("ZRPC_SEND_TRACEBACKS", "yes", "django_zrpc.E011"),
        ("ZRPC_OPS", "not an address", "django_zrpc.E017"),
        ("ZRPC_METRICS", "yes", "django_zrpc.E018"),
        ("ZRPC_RETRY_BUDGET", -1, "django_zrpc.E021"),
        ("ZRPC_RETRY_BUDGET", "100", "django_zrpc.E021"),
        ("ZRPC_RETRY_RATIO", 0, "django_zrpc.E021"),
        ("ZRPC_RETRY_RATIO", 1.5, "django_zrpc.E021"),
    ],
)
def test_bad_settings_are_check_errors(setting, value, error_id):
    with override_settings(**{setting: value}):
        messages = check_settings()
    assert ids(messages) == [error_id]
    assert repr(value) in messages[0].msg or "no.such.Middleware" in messages[0].msg


def test_default_middleware_follows_what_is_configured():
    assert conf.get("MIDDLEWARE")[0] == conf.DB_MIDDLEWARE
    assert conf.SENTRY_MIDDLEWARE in conf.get("MIDDLEWARE")  # sentry-sdk is installed here
    assert conf.RAVEN_MIDDLEWARE not in conf.get("MIDDLEWARE")
    with override_settings(RAVEN_CONFIG={"dsn": "http://a:b@127.0.0.1:9/1"}):
        assert conf.RAVEN_MIDDLEWARE in conf.get("MIDDLEWARE")
    with override_settings(ZRPC_MIDDLEWARE=[]):
        assert conf.get("MIDDLEWARE") == []


def test_unknown_setting_name_is_a_key_error():
    with pytest.raises(KeyError, match="'NOPE' is not a django_zrpc setting"):
        conf.get("NOPE")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"ZRPC_ANNOUNCE": "redis://127.0.0.1:6379/0"}, "is not a Redis endpoint"),
        ({"ZRPC_ANNOUNCE": "redis://127.0.0.1:6379/0?service=t", "ZRPC_ANNOUNCE_TTL": 0}, "0"),
        (
            {"ZRPC_ANNOUNCE": "redis://127.0.0.1:6379/0?service=t", "ZRPC_ANNOUNCE_ADDRESS": "x"},
            "must be like 'tcp://10.0.0.5:4242', not 'x'",
        ),
    ],
)
def test_a_bad_announcement_is_a_check_error(overrides, message):
    with override_settings(**overrides):
        messages = check_settings()
    assert ids(messages) == ["django_zrpc.E014"]
    assert message in messages[0].msg


def test_a_good_announcement_passes():
    url = "redis://127.0.0.1:6379/0?service=tickets"
    with override_settings(ZRPC_ANNOUNCE=url, ZRPC_ANNOUNCE_ADDRESS="tcp://10.0.0.5:4242"):
        assert check_settings() == []


@pytest.mark.parametrize(
    ("endpoints", "message"),
    [
        ("dns:///tickets", "is not a DNS endpoint"),
        ("redis://127.0.0.1:6379/0", "is not a Redis endpoint"),
        (["redis://127.0.0.1:6379/0?service=t", "tcp://127.0.0.1:1"], "give it alone"),
    ],
)
def test_a_bad_source_of_client_endpoints_is_a_check_error(endpoints, message):
    with override_settings(ZRPC_CLIENTS={"tickets": {"ENDPOINTS": endpoints}}):
        messages = check_settings()
    assert ids(messages) == ["django_zrpc.E008"]
    assert message in messages[0].msg


def test_client_endpoints_from_dns_or_redis_pass():
    clients = {
        "k8s": {"ENDPOINTS": "dns:///tickets-rpc.default.svc:4242", "REFRESH": 10},
        "hosts": {"ENDPOINTS": "redis://redis.internal:6379/0?service=tickets"},
    }
    with override_settings(ZRPC_CLIENTS=clients):
        assert check_settings() == []
