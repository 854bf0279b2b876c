"""With CURVE: each key limited to its functions, and keys trusted to name users unsigned."""

from __future__ import annotations

import uuid

import pytest
from django.core.exceptions import PermissionDenied
from django.core.management import call_command
from django.test import override_settings

from tests.transport.test_curve import Keys


class ReportKeys(Keys):
    """The CURVE test keys, and one more admitted client: "reports"."""

    def __init__(self, root) -> None:
        super().__init__(root)
        call_command("rpckeys", str(root / "reports"), "reports", stdout=open("/dev/null", "w"))
        (self.allow / "reports.key").write_bytes(self.public("reports").read_bytes())


@pytest.fixture(scope="module")
def db(django_db_setup, django_db_blocker):
    with django_db_blocker.unblock():
        yield


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> ReportKeys:
    return ReportKeys(tmp_path_factory.mktemp("keys"))


@pytest.fixture(scope="module")
def server(start_module_server, keys, tmp_path_factory, db):
    folder = tmp_path_factory.mktemp("settings")
    (folder / "curve_identity_settings.py").write_text(
        "from tests.settings import *\n"
        "ZRPC_KEY_FUNCTIONS = {'reports': ['report_*']}\n"
        "ZRPC_TRUSTED_USER_KEYS = ['web']\n"
    )
    return start_module_server(
        "--settings=curve_identity_settings", *keys.server_args(), PYTHONPATH=str(folder)
    )


@pytest.fixture(scope="module")
def user(db):
    from django.contrib.auth.models import User

    return User.objects.create_user(f"curve-{uuid.uuid4().hex[:8]}")


def ran(tag: str) -> bool:
    from tests.identity_probes.models import ProbeRun

    return ProbeRun.objects.filter(tag=tag).exists()


def test_a_key_calls_inside_its_list_and_is_refused_outside_it(server, keys):
    with keys.client(server.endpoint, "reports") as reports:
        tag = uuid.uuid4().hex
        assert reports.report_daily(tag) == {"user_id": None, "username": None}
        assert ran(tag)
        tag = uuid.uuid4().hex
        mark = server.mark()
        with pytest.raises(PermissionDenied, match="key 'reports' may not call 'identity_open'"):
            reports.identity_open(tag)
    assert not ran(tag)
    server.wait_for("rpc identity_open refused (key)", since=mark)
    # A key with no list calls anything.
    with keys.client(server.endpoint, "web") as web:
        tag = uuid.uuid4().hex
        web.identity_open(tag)
    assert ran(tag)


def test_a_trusted_key_names_a_user_without_the_shared_key_and_others_cannot(server, keys, user):
    # This process signs with a key the server does not have.
    with override_settings(ZRPC_SIGNING_KEY="not-the-servers-key-" + "y" * 40):
        with keys.client(server.endpoint, "web") as web:
            tag = uuid.uuid4().hex
            seen = web.as_user(user).identity_login(tag)
            assert seen == {"user_id": user.pk, "username": user.username}
        with keys.client(server.endpoint, "reports") as reports:
            tag = uuid.uuid4().hex
            mark = server.mark()
            with pytest.raises(PermissionDenied, match="does not verify"):
                reports.as_user(user).report_daily(tag)
    assert not ran(tag)
    server.wait_for("rpc report_daily refused (identity)", since=mark)
