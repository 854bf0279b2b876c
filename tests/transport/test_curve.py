"""CURVE: keys from rpckeys, a runrpc server that admits only its allow-list, clear refusals."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.test import override_settings
from zmq.utils import z85

from django_zrpc import HandshakeFailed, RPCClient, clients
from django_zrpc.checks import check_settings
from django_zrpc.curve import CurveKeyError, load_public_key, load_secret_key
from tests.conftest import ROOT, subprocess_env

# Refusals must come this long before the calls' timeout would have.
CALL_TIMEOUT = 20.0
SOON = 5.0


class Keys:
    """A server's keypair, an allow-list with the client "web", and an unknown "intruder"."""

    def __init__(self, root: Path) -> None:
        self.root = root
        for folder, name in (("server", "server"), ("web", "web"), ("intruder", "intruder")):
            call_command("rpckeys", str(root / folder), name, stdout=open("/dev/null", "w"))
        self.allow = root / "allow"
        self.allow.mkdir()
        (self.allow / "web.key").write_bytes((root / "web" / "web.key").read_bytes())
        self.server_secret = root / "server" / "server.key_secret"
        self.server_public = root / "server" / "server.key"

    def secret(self, name: str) -> Path:
        return self.root / name / f"{name}.key_secret"

    def public(self, name: str) -> Path:
        return self.root / name / f"{name}.key"

    def server_args(self) -> list[str]:
        return ["--curve-secret", str(self.server_secret), "--curve-allow", str(self.allow)]

    def client(self, endpoint: str, name: str = "web", **options) -> RPCClient:
        options.setdefault("curve_secret", self.secret(name))
        options.setdefault("curve_server", self.server_public)
        return RPCClient(endpoint, timeout=CALL_TIMEOUT, **options)


@pytest.fixture
def keys(tmp_path) -> Keys:
    return Keys(tmp_path)


@pytest.fixture
def curve_server(start_server, keys):
    """A CURVE server of the test's own.

    For the tests that change its allow-list or read its log of refusals,
    which it writes at most once a second.
    """
    return start_server(*keys.server_args())


@pytest.fixture(scope="module")
def shared_keys(tmp_path_factory) -> Keys:
    return Keys(tmp_path_factory.mktemp("keys"))


@pytest.fixture(scope="module")
def shared_curve_server(start_module_server, shared_keys):
    """A CURVE server of ``shared_keys`` for the module's tests that are only admitted."""
    return start_module_server(*shared_keys.server_args())


def run_runrpc(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", "runrpc", "--noreload", *args],
        cwd=ROOT,
        env=subprocess_env(DATABASE_URL="sqlite:///:memory:"),
        capture_output=True,
        text=True,
        timeout=60,
    )


# -- rpckeys ---------------------------------------------------------------------


def test_rpckeys_writes_a_public_and_a_private_secret_file(tmp_path, capsys):
    call_command("rpckeys", str(tmp_path / "keys"), "billing")
    public, secret = tmp_path / "keys" / "billing.key", tmp_path / "keys" / "billing.key_secret"
    assert public.stat().st_mode & 0o777 == 0o644
    assert secret.stat().st_mode & 0o777 == 0o600
    assert load_secret_key(secret)[0] == load_public_key(public)
    with pytest.raises(CurveKeyError, match="holds no secret key"):
        load_secret_key(public)
    assert "billing.key_secret (secret, mode 0600" in capsys.readouterr().out


def test_rpckeys_never_overwrites_and_refuses_a_path_as_name(tmp_path):
    call_command("rpckeys", str(tmp_path), "web", stdout=open("/dev/null", "w"))
    before = (tmp_path / "web.key_secret").read_bytes()
    with pytest.raises(CommandError, match=r"web\.key exists"):
        call_command("rpckeys", str(tmp_path), "web")
    assert (tmp_path / "web.key_secret").read_bytes() == before
    with pytest.raises(CommandError, match="is not a key name"):
        call_command("rpckeys", str(tmp_path), "../web")


def test_a_file_that_is_not_a_key_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.key"
    bad.write_text('public-key = "short"\n')
    with pytest.raises(CurveKeyError, match="malformed key"):
        load_public_key(bad)
    with pytest.raises(CurveKeyError, match="Cannot read the CURVE key file"):
        load_public_key(tmp_path / "missing.key")


# -- admitting and refusing ----------------------------------------------------------


def test_allowed_key_calls_and_its_name_reaches_the_function(shared_curve_server, shared_keys):
    assert "CURVE on: admitting 1 client key(s)" in shared_curve_server.output
    client = shared_keys.client(shared_curve_server.endpoint)
    assert client.call_context()["client_key"] == "web"
    assert client.call_context_blocking()["client_key"] == "web"
    assert [item["client_key"] for item in client.call_context_stream(3)] == ["web"] * 3
    assert client.echo([1, "two"]) == [1, "two"]


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("unknown key", "the server refused this client's CURVE key"),
        ("no CURVE", "give this client curve_secret and curve_server"),
        ("wrong server key", "is curve_server the public key of the server at this endpoint"),
    ],
)
def test_refused_clients_get_a_clear_error_soon_and_are_logged(curve_server, keys, case, message):
    if case == "unknown key":
        client = keys.client(curve_server.endpoint, "intruder")
    elif case == "no CURVE":
        client = RPCClient(curve_server.endpoint, timeout=CALL_TIMEOUT)
    else:
        client = keys.client(curve_server.endpoint, curve_server=keys.public("intruder"))
    started = time.monotonic()
    with pytest.raises(HandshakeFailed, match=message) as raised:
        client.echo(1)
    assert time.monotonic() - started < SOON
    assert curve_server.endpoint in str(raised.value)
    if case == "unknown key":  # the ZAP handler logs the key, the peer and the allow-list
        refused = z85.encode(z85.decode(load_public_key(keys.public("intruder")))).decode()
        curve_server.wait_for(f"key {refused} from", timeout=5)
        line = next(line for line in curve_server.lines if refused in line)
        assert "Refused 1 CURVE client(s)" in line
        assert "127.0.0.1" in line
        assert str(keys.allow) in line
    else:
        curve_server.wait_for("failed the CURVE handshake", timeout=5)
    # The server stays up for the clients it admits.
    assert keys.client(curve_server.endpoint).echo(2) == 2


def test_a_key_added_to_the_allow_list_is_admitted_without_a_restart(curve_server, keys):
    with pytest.raises(HandshakeFailed):
        keys.client(curve_server.endpoint, "intruder").echo(1)
    (keys.allow / "intruder.key").write_bytes(keys.public("intruder").read_bytes())
    assert keys.client(curve_server.endpoint, "intruder").call_context()["client_key"] == (
        "intruder"
    )


def test_a_key_removed_from_the_allow_list_is_refused_on_its_next_connection(curve_server, keys):
    assert keys.client(curve_server.endpoint).echo(1) == 1
    (keys.allow / "web.key").unlink()
    with pytest.raises(HandshakeFailed, match="refused this client's CURVE key"):
        keys.client(curve_server.endpoint).echo(1)


def test_the_server_stops_with_an_error_if_its_zap_handler_dies(keys):
    import gevent

    from django_zrpc.curve import ServerKeys
    from django_zrpc.server.engine import ServedFunction, Server

    server = Server(
        {"echo": ServedFunction(lambda value: value)},
        curve=ServerKeys.from_files(keys.server_secret, keys.allow),
        stall_after=0,
        stop_linger=0,
    )
    server.bind("tcp://127.0.0.1:0")
    running = gevent.spawn(server.run)
    gevent.sleep(0.1)
    server._authenticator_greenlet.kill()
    running.get(timeout=5)  # run() returned: the server stopped by itself
    server.close()
    assert server.failure is not None
    assert "The CURVE ZAP handler stopped" in server.failure


def test_named_client_takes_its_keys_from_zrpc_clients(shared_curve_server, shared_keys):
    config = {
        "ENDPOINTS": [shared_curve_server.endpoint],
        "CURVE_SECRET": str(shared_keys.secret("web")),
        "CURVE_SERVER": str(shared_keys.server_public),
    }
    with override_settings(ZRPC_CLIENTS={"secure": config}):
        assert clients["secure"].call_context()["client_key"] == "web"


# -- refusing to start, and warnings -----------------------------------------------


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("missing folder", "does not exist"),
        ("empty folder", "holds no *.key file"),
        ("secret only", "CURVE needs both"),
        ("public key as secret", "holds no secret key"),
    ],
)
def test_server_refuses_to_start_without_a_usable_allow_list(keys, tmp_path, setup, message):
    secret, allow = str(keys.server_secret), str(keys.allow)
    if setup == "missing folder":
        allow = str(tmp_path / "nowhere")
    elif setup == "empty folder":
        (tmp_path / "empty").mkdir()
        allow = str(tmp_path / "empty")
    elif setup == "public key as secret":
        secret = str(keys.server_public)
    args = ["--curve-secret", secret]
    if setup != "secret only":
        args += ["--curve-allow", allow]
    result = run_runrpc(*args, "127.0.0.1:1")
    assert result.returncode == 1
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert "Serving" not in result.stdout


def test_runrpc_warns_when_it_binds_beyond_loopback_without_curve():
    # A name that cannot resolve: the warning is printed, nothing is bound.
    result = run_runrpc("--skip-checks", "no-such-host.invalid:4242")
    assert "reachable from other machines and CURVE is off" in result.stderr
    assert result.returncode == 1


def test_checks_warn_on_a_public_address_without_curve_and_validate_curve_settings(keys):
    with override_settings(ZRPC_ADDRPORT="0.0.0.0:4242"):
        assert [m.id for m in check_settings()] == ["django_zrpc.W001"]
    with override_settings(
        ZRPC_ADDRPORT="0.0.0.0:4242",
        ZRPC_CURVE_SECRET=str(keys.server_secret),
        ZRPC_CURVE_ALLOW=str(keys.allow),
    ):
        assert check_settings() == []
    with override_settings(ZRPC_CURVE_SECRET=str(keys.server_secret)):
        assert [m.id for m in check_settings()] == ["django_zrpc.E012"]
    with override_settings(
        ZRPC_CLIENTS={"x": {"ENDPOINTS": "tcp://127.0.0.1:1", "CURVE_SECRET": "/nope"}}
    ):
        messages = check_settings()
        assert [m.id for m in messages] == ["django_zrpc.E008"]
        assert "CURVE needs both files" in messages[0].msg
