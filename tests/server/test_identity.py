"""Signed identity against a real runrpc and real database users: who may run what.

Each refusal is checked three ways: the caller gets ``PermissionDenied``
(Django's, on the client side), the function did not run (the row it writes
is absent), and the server logged the refusal with its reason.
"""

from __future__ import annotations

import time
import uuid

import msgpack
import pytest
from django.core.exceptions import PermissionDenied
from django.core.signing import b62_encode
from django.test import override_settings

from django_zrpc import RPCClient, identity
from django_zrpc.wire import protocol
from tests.conftest import raw_dealer
from tests.ops_http import scrape, value

TIMEOUT = 20.0


@pytest.fixture(scope="module")
def db(django_db_setup, django_db_blocker):
    """Let this module's tests read and write the test database the servers use."""
    with django_db_blocker.unblock():
        yield


@pytest.fixture(scope="module")
def users(db):
    """Real users: with the permission, with it through a group, without, inactive."""
    from django.contrib.auth.models import Group, Permission, User

    permission = Permission.objects.get(
        content_type__app_label="identity_probes", codename="run_probe"
    )
    group = Group.objects.create(name=f"probers-{uuid.uuid4().hex[:8]}")
    group.permissions.add(permission)
    made = {}
    for name in ("ok_alice", "bob", "carol", "dave", "erin"):
        made[name] = User.objects.create_user(f"{name}-{uuid.uuid4().hex[:6]}", password="x")
    made["ok_alice"].user_permissions.add(permission)
    made["carol"].groups.add(group)
    made["dave"].is_active = False
    made["dave"].save()
    return made


@pytest.fixture(scope="module")
def ops_port():
    from tests.conftest import free_port

    return free_port()


@pytest.fixture(scope="module")
def server(start_module_server, ops_port, db):
    return start_module_server("--heartbeat", "1", "--ops", f"127.0.0.1:{ops_port}")


@pytest.fixture(scope="module")
def client(server):
    with RPCClient(server.endpoint, timeout=TIMEOUT) as rpc:
        yield rpc


def ran(tag: str) -> bool:
    from tests.identity_probes.models import ProbeRun

    return ProbeRun.objects.filter(tag=tag).exists()


def new_tag() -> str:
    return uuid.uuid4().hex


def refused(server, call, tag: str, reason: str, match: str) -> None:
    """Make ``call``; check it was refused for ``reason``, not run, and logged."""
    mark = server.mark()
    with pytest.raises(PermissionDenied, match=match) as caught:
        call()
    assert caught.value.name == "PermissionDenied"
    assert not ran(tag)
    server.wait_for(f"refused ({reason})", since=mark)


def raw_call(server, name: str, args: list, header: dict) -> tuple[str, list]:
    """Send one request with ``header`` from a bare DEALER; return the reply's name and args."""
    sock = raw_dealer(server.endpoint)
    try:
        message_id = uuid.uuid4().hex.encode()
        blob = protocol.pack(name, args, {"message_id": message_id, "v": 3, **header})
        sock.send_multipart([b"", blob])
        for _ in range(20):  # heartbeats may come before the reply
            _, blob = sock.recv_multipart()  # RCVTIMEO: 10 s
            _, event, reply = msgpack.unpackb(blob, raw=False)
            if event != protocol.HEARTBEAT:
                return event, reply
        raise AssertionError("no reply after 20 heartbeats")
    finally:
        sock.close()


def test_a_signed_user_runs_a_login_required_function_and_the_function_sees_them(
    server, client, users
):
    tag = new_tag()
    alice = users["ok_alice"]
    seen = client.as_user(alice).identity_login(tag)
    assert seen == {"user_id": alice.pk, "username": alice.username}
    assert ran(tag)


def test_a_forged_user_id_in_a_raw_header_is_ignored_and_refused(server, users):
    alice = users["ok_alice"]
    # The unsigned claim of earlier releases: read as no user at all.
    tag = new_tag()
    event, reply = raw_call(server, "identity_open", [tag], {"user_id": alice.pk})
    assert (event, reply) == ("OK", [{"user_id": None, "username": None}])
    tag = new_tag()
    mark = server.mark()
    event, reply = raw_call(server, "identity_login", [tag], {"user_id": alice.pk})
    assert (event, reply[0]) == ("ERR", "PermissionDenied")
    assert "needs a logged-in, active user" in reply[1]
    assert not ran(tag)
    server.wait_for("rpc identity_login refused (login)", since=mark)
    # A token made up by hand, with no key.
    tag = new_tag()
    forged = f"{alice.pk}:{b62_encode(int(time.time()) + 60)}:forged-mac"
    event, reply = raw_call(server, "identity_login", [tag], {"identity": forged})
    assert (event, reply[0]) == ("ERR", "PermissionDenied")
    assert "does not verify" in reply[1]
    assert not ran(tag)
    server.wait_for("rpc identity_login refused (identity)", since=mark)


def test_a_token_signed_with_another_key_is_refused(server, client, users):
    tag = new_tag()
    with override_settings(ZRPC_SIGNING_KEY="another-key-" + "x" * 40):
        bound = client.as_user(users["ok_alice"])
        refused(server, lambda: bound.identity_open(tag), tag, "identity", "does not verify")


def test_a_token_replayed_for_another_function_is_refused(server, users):
    tag = new_tag()
    token = identity.token_for(users["ok_alice"].pk, "identity_open")
    refused(
        server,
        lambda: _raise_err(raw_call(server, "identity_login", [tag], {"identity": token})),
        tag,
        "identity",
        "for another function",
    )


def _raise_err(reply: tuple[str, list]) -> None:
    event, args = reply
    if event == "ERR":
        error = PermissionDenied(args[1])
        error.name = args[0]  # type: ignore[attr-defined]
        raise error


def test_an_expired_token_is_refused(server, client, users, monkeypatch):
    tag = new_tag()
    # Tokens made an hour ago: their 60 s are long gone.
    monkeypatch.setattr(identity, "clock", lambda: time.time() - 3600)
    bound = client.as_user(users["ok_alice"])
    refused(server, lambda: bound.identity_open(tag), tag, "identity", "has expired")


def test_a_user_without_the_permission_is_refused_and_a_group_grants_it(server, client, users):
    tag = new_tag()
    bound = client.as_user(users["bob"])
    needed = "identity_probes.run_probe"
    refused(server, lambda: bound.identity_perm(tag), tag, "permission", needed)
    tag = new_tag()
    assert client.as_user(users["carol"]).identity_perm(tag)["user_id"] == users["carol"].pk
    assert ran(tag)


def test_an_inactive_user_is_refused(server, client, users):
    tag = new_tag()
    bound = client.as_user(users["dave"])
    refused(server, lambda: bound.identity_login(tag), tag, "login", "logged-in, active user")


def test_a_user_deleted_after_their_token_was_made_is_refused(server, users):
    from django.contrib.auth.models import User

    tag = new_tag()
    erin = User.objects.create_user(f"erin-{tag[:8]}")
    token = identity.token_for(erin.pk, "identity_login")
    erin.delete()
    refused(
        server,
        lambda: _raise_err(raw_call(server, "identity_login", [tag], {"identity": token})),
        tag,
        "login",
        "logged-in, active user",
    )


def test_an_anonymous_call_to_a_login_required_function_is_refused(server, client):
    tag = new_tag()
    refused(server, lambda: client.identity_login(tag), tag, "login", "the call is anonymous")


def test_a_stock_zerorpc_client_is_anonymous(server):
    tag = new_tag()
    with server.client(timeout=TIMEOUT) as stock:
        assert stock.identity_open(tag) == {"user_id": None, "username": None}
        assert ran(tag)
        tag = new_tag()
        mark = server.mark()
        with pytest.raises(Exception, match="PermissionDenied") as caught:
            stock.identity_login(tag)
        assert caught.value.name == "PermissionDenied"
    assert not ran(tag)
    server.wait_for("refused (login)", since=mark)


def test_allow_decides_with_the_calls_context(server, client, users):
    tag = new_tag()
    bound = client.as_user(users["bob"])
    refused(server, lambda: bound.identity_allow(tag), tag, "allow", "refused this call")
    tag = new_tag()
    assert client.as_user(users["ok_alice"]).identity_allow(tag)["username"].startswith("ok_")


def test_refusals_are_counted_by_function_and_reason(server, client, ops_port):
    tag = new_tag()
    before = scrape(f"http://127.0.0.1:{ops_port}")
    counted = ("zrpc_server_calls_denied_total", {"function": "identity_login", "reason": "login"})
    with pytest.raises(PermissionDenied):
        client.identity_login(tag)
    after = scrape(f"http://127.0.0.1:{ops_port}")
    assert value(after, counted[0], **counted[1]) == value(before, counted[0], **counted[1]) + 1
