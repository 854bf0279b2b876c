"""The identity settings' checks (E024-E026), and rpclist's requirement of each function."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import call_command
from django.test import override_settings

from django_zrpc.exceptions import ZRPCConfigurationError
from django_zrpc.identity_checks import check_identity_settings
from django_zrpc.registry import Registry


def ids(**settings: object) -> list[tuple[str, str]]:
    with override_settings(**settings):
        return [(error.id, error.msg) for error in check_identity_settings()]


def test_the_defaults_pass():
    assert ids() == []


@pytest.mark.parametrize(
    ("settings", "id", "says"),
    [
        ({"ZRPC_SIGNING_KEY": "short"}, "django_zrpc.E024", "not a string of 5 characters"),
        ({"ZRPC_SIGNING_KEY": 12}, "django_zrpc.E024", "not 'int'"),
        ({"ZRPC_IDENTITY_TTL": 0}, "django_zrpc.E025", "not 0"),
        ({"ZRPC_IDENTITY_TTL": "60"}, "django_zrpc.E025", "not '60'"),
        ({"ZRPC_TRUSTED_USER_KEYS": "web"}, "django_zrpc.E026", "not 'web'"),
        ({"ZRPC_KEY_FUNCTIONS": {"reports": "report_*"}}, "django_zrpc.E026", "lists of function"),
    ],
)
def test_a_bad_setting_is_named_with_how_to_fix_it(settings, id, says):
    (found,) = ids(**settings)
    assert found[0] == id
    assert says in found[1]


def test_good_settings_pass():
    assert (
        ids(
            ZRPC_SIGNING_KEY="s" * 50,
            ZRPC_IDENTITY_TTL=30,
            ZRPC_TRUSTED_USER_KEYS=["web"],
            ZRPC_KEY_FUNCTIONS={"reports": ["report_*", "ping"]},
        )
        == []
    )


def test_rpclist_shows_each_functions_requirement():
    out = io.StringIO()
    call_command("rpclist", "--json", stdout=out)
    requires = {entry["name"]: entry["requires"] for entry in json.loads(out.getvalue())}
    assert requires["identity_open"] == ""
    assert requires["identity_login"] == "login"
    assert requires["identity_perm"] == "perm identity_probes.run_probe"
    assert requires["identity_allow"] == "allow _named_ok"
    out = io.StringIO()
    call_command("rpclist", stdout=out)
    assert "identity_login(tag)  [requires login]" in out.getvalue()


def test_register_refuses_a_bad_permission_or_allow():
    registry = Registry()
    with pytest.raises(ZRPCConfigurationError, match=r"must be 'app_label\.codename' or a list"):
        registry.register(permission_required="nodot")(lambda: None)
    with pytest.raises(ZRPCConfigurationError, match=r"allow= of rpc 'f' must be a callable"):
        registry.register("f", allow=True)(lambda: None)
