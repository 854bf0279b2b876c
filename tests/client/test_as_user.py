"""Calls made for a user: from a logged-in view (sync and async), ``as_user``, a plain script."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid

import pytest
from asgiref.sync import sync_to_async
from django.core.exceptions import PermissionDenied
from django.db import connections
from django.http import HttpResponse
from django.test import AsyncClient, Client, RequestFactory, override_settings

from django_zrpc import AsyncRPCClient, RPCClient
from django_zrpc.context import RequestContextMiddleware
from tests.conftest import ROOT, subprocess_env

TIMEOUT = 20.0

WEB = override_settings(
    ROOT_URLCONF="tests.identity_probes.urls",
    MIDDLEWARE=[
        "django.contrib.sessions.middleware.SessionMiddleware",
        "django.contrib.auth.middleware.AuthenticationMiddleware",
        "django_zrpc.context.RequestContextMiddleware",
    ],
    # Sessions in a signed cookie: no session table to make.
    SESSION_ENGINE="django.contrib.sessions.backends.signed_cookies",
)

SCRIPT = """
import json, sys
from django.conf import settings

# Not the project's settings: only the key this process shares with the server.
settings.configure(SECRET_KEY=sys.argv[1])
from django_zrpc import RPCClient

with RPCClient(sys.argv[2], timeout=20) as client:
    print(json.dumps(client.as_user(int(sys.argv[3])).identity_login(sys.argv[4])))
"""


@pytest.fixture(scope="module")
def db(django_db_setup, django_db_blocker):
    with django_db_blocker.unblock():
        yield


@pytest.fixture(scope="module")
def user(db):
    from django.contrib.auth.models import User

    return User.objects.create_user(f"viewer-{uuid.uuid4().hex[:8]}", password="x")


@pytest.fixture(scope="module")
def server(start_module_server, db):
    return start_module_server("--heartbeat", "1")


def seen(tag: str) -> list[str]:
    from tests.identity_probes.models import ProbeRun

    return list(ProbeRun.objects.filter(tag=tag).values_list("user_id", flat=True))


def test_a_logged_in_users_view_calls_a_login_required_function_that_sees_them(server, user):
    tag = uuid.uuid4().hex
    with WEB:
        web = Client()
        web.force_login(user)
        response = web.get("/whoami/", {"endpoint": server.endpoint, "tag": tag})
    assert response.status_code == 200, response.content
    assert response.json() == {"user_id": user.pk, "username": user.username}
    assert seen(tag) == [str(user.pk)]


def test_an_async_view_reads_the_user_with_auser_and_the_function_sees_them(server, user):
    tag = uuid.uuid4().hex

    async def get() -> object:
        web = AsyncClient()
        await web.aforce_login(user)
        try:
            return await web.get("/awhoami/", {"endpoint": server.endpoint, "tag": tag})
        finally:
            # The thread that read the session's user holds a connection: the
            # test database could not be dropped at the end.
            await sync_to_async(connections.close_all)()

    with WEB:
        response = asyncio.run(get())
    assert response.status_code == 200, response.content
    assert response.json() == {"user_id": user.pk, "username": user.username}


def test_as_user_shares_the_pools_and_overrides_the_requests_user(server, user):
    from django.contrib.auth.models import AnonymousUser

    results = {}
    with RPCClient(server.endpoint, timeout=TIMEOUT) as client:

        def view(request):
            results["request"] = client.identity_open("t1")
            results["bound"] = client.as_user(user).identity_open("t2")
            results["anonymous"] = client.as_user(AnonymousUser()).identity_open("t3")
            return HttpResponse("ok")

        request = RequestFactory().get("/")
        request.user = type("Someone", (), {"pk": 999_999, "is_authenticated": True})()
        RequestContextMiddleware(view)(request)
        assert client.connections() == 1
        bound = client.as_user(user.pk)
        assert bound.endpoints == client.endpoints
        assert bound.call("identity_open", "t4")["username"] == user.username
        assert bound.as_user(None)("identity_open", "t5")["user_id"] is None
    assert results["request"] == {"user_id": 999_999, "username": None}  # no such user here
    assert results["bound"] == {"user_id": user.pk, "username": user.username}
    assert results["anonymous"] == {"user_id": None, "username": None}


def test_async_as_user(server, user):
    async def calls() -> tuple:
        client = AsyncRPCClient(server.endpoint, timeout=TIMEOUT)
        try:
            bound = client.as_user(user)
            return await bound.identity_login("a1"), await client.identity_open("a2")
        finally:
            await client.aclose()

    as_user, anonymous = asyncio.run(calls())
    assert as_user == {"user_id": user.pk, "username": user.username}
    assert anonymous == {"user_id": None, "username": None}


def test_an_async_call_refused_raises_djangos_permission_denied(server, user):
    tag = uuid.uuid4().hex

    async def call() -> None:
        client = AsyncRPCClient(server.endpoint, timeout=TIMEOUT)
        try:
            await client.as_user(user).identity_perm(tag)
        finally:
            await client.aclose()

    with pytest.raises(PermissionDenied, match=r"needs the permission identity_probes\.run_probe"):
        asyncio.run(call())
    assert seen(tag) == []


def test_as_user_from_a_plain_script_with_only_the_shared_key(server, user):
    from django.conf import settings

    tag = uuid.uuid4().hex
    env = subprocess_env()
    env.pop("DJANGO_SETTINGS_MODULE")
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, settings.SECRET_KEY, server.endpoint, str(user.pk), tag],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {
        "user_id": user.pk,
        "username": user.username,
    }
    assert seen(tag) == [str(user.pk)]
