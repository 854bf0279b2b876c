"""A real ``manage.py runrpc`` process called over TCP by stock zerorpc clients."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import gevent
import pytest
import zerorpc
from django.core.management import CommandError, call_command

from django_zrpc import RPCClient
from tests.conftest import ROOT, free_port, subprocess_env


def test_call_returns_a_ticket(server):
    with server.client() as client:
        ticket = client.get_ticket(7)
    assert ticket["id"] == 7
    assert ticket["title"] == "Ticket 7"
    assert ticket["price"] == "7.99"


def test_stream_of_250_items(server):
    with server.client() as client:
        items = list(client.ticket_list(250))
    assert [t["id"] for t in items] == list(range(1, 251))


def test_remote_error_has_name_and_message_and_server_keeps_serving(server):
    mark = server.mark()
    with server.client() as client:
        with pytest.raises(zerorpc.RemoteError) as caught:
            client.fail("x")
        assert caught.value.name == "ValueError"
        assert caught.value.msg == "x"
        assert client.echo(42) == 42
    server.wait_for("ERROR rpc fail failed in", since=mark)
    assert "ValueError: x" in server.output_since(mark)  # the traceback went to the log


def test_an_expected_error_is_logged_at_info_without_a_traceback(server):
    """DoesNotExist is what a view turns into a 404: one INFO line, not an ERROR and traceback."""
    from django.core.exceptions import ObjectDoesNotExist

    mark = server.mark()
    with RPCClient(server.endpoint, timeout=10) as client:
        with pytest.raises(ObjectDoesNotExist):
            client.get_ticket(id=-1)
        assert client.echo("after") == "after"
    server.wait_for("INFO rpc get_ticket raised DoesNotExist in", since=mark)
    logged = server.output_since(mark)
    assert "ERROR" not in logged
    assert "Traceback" not in logged


def test_unknown_function_is_a_remote_name_error(server):
    mark = server.mark()
    with server.client() as client:
        with pytest.raises(zerorpc.RemoteError) as caught:
            client.no_such_function()
        assert caught.value.name == "NameError"
        assert client.echo("still up") == "still up"
    server.wait_for("rpc no_such_function: no such function is registered", since=mark)


def test_a_misspelled_function_is_named_with_the_closest_and_rpclist(server):
    with server.client() as client:
        with pytest.raises(zerorpc.RemoteError) as caught:
            client.get_tiket(1)
        with pytest.raises(zerorpc.RemoteError) as unlike:
            client.zzzzzz()
    assert caught.value.name == "NameError"  # what zerorpc clients expect
    assert caught.value.msg == (
        "No function is named 'get_tiket' here. Did you mean 'get_ticket'? "
        "manage.py rpclist (or zerorpc's _zerorpc_list) lists the functions served."
    )
    assert "Did you mean" not in unlike.value.msg
    assert "rpclist" in unlike.value.msg


def test_one_log_line_per_call_with_method_duration_outcome(server):
    mark = server.mark()
    with server.client() as client:
        client.echo(1)
    server.wait_for("INFO rpc echo OK in ", since=mark)


def test_call_log_can_be_switched_off_but_errors_are_still_logged(start_server):
    server = start_server(ZRPC_LOG_CALLS="0")
    with server.client() as client:
        assert client.echo(1) == 1
        with pytest.raises(zerorpc.RemoteError):
            client.fail("still logged")
    server.wait_for("ERROR rpc fail failed in")
    assert not any("rpc echo OK" in line for line in server.lines)


def test_introspection_works_on_python_3_11(server):
    with server.client() as client:
        names = client._zerorpc_list()
        inspected = client._zerorpc_inspect()
        args = client._zerorpc_args("count_up")
        help_text = client._zerorpc_help("get_ticket")
    assert {"get_ticket", "ticket_list", "fail", "echo"} <= set(names)
    assert not any(name.startswith("_") for name in names)
    assert inspected["methods"]["count_up"]["args"] == [
        {"name": "n"},
        {"name": "delay", "default": 0.0},
    ]
    assert inspected["methods"]["get_ticket"]["doc"] == "Return one ticket by id."
    assert args == [["n", "delay"], None, None, [0.0]]
    assert help_text == "Return one ticket by id."


def test_zerorpc_command_line_client_lists_functions(server):
    result = subprocess.run(
        [str(Path(sys.executable).parent / "zerorpc"), server.endpoint],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert "get_ticket" in result.stdout
    assert "Return one ticket by id." in result.stdout


def test_ten_sleeping_calls_run_concurrently(server):
    with server.client(timeout=10) as client:
        started = time.monotonic()
        calls = [gevent.spawn(client.sleep, 1) for _ in range(10)]
        gevent.joinall(calls, timeout=15, raise_error=True)
        elapsed = time.monotonic() - started
    assert [call.value for call in calls] == [1] * 10
    # One after the other they would take 10 s.
    assert elapsed < 5, f"10 calls of sleep(1) took {elapsed:.1f}s: not concurrent"


def test_call_longer_than_three_heartbeats_succeeds(server):
    with server.client(timeout=10, heartbeat=1) as client:
        assert client.sleep(3.5) == 3.5


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_the_server_with_exit_code_0(start_server, signum):
    server = start_server()
    with server.client() as client:
        assert client.echo(1) == 1
    assert server.stop(signum) == 0
    assert "Server stopped." in server.output
    assert "Traceback" not in server.output


def test_port_in_use_is_a_readable_error(server):
    result = subprocess.run(
        [sys.executable, "manage.py", "runrpc", "--noreload", f"127.0.0.1:{server.port}"],
        cwd=ROOT,
        env=subprocess_env(DATABASE_URL="sqlite:///:memory:"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert f"Port {server.port} on 127.0.0.1 is already in use." in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("addrport", ["abc", "127.0.0.1:", "70000", "300.1.1.1:4242"])
def test_invalid_addrport_exits_non_zero_with_a_clear_message(addrport):
    result = subprocess.run(
        [sys.executable, "manage.py", "runrpc", "--noreload", addrport],
        cwd=ROOT,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "CommandError:" in result.stderr
    assert addrport in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("concurrency", 0, "--concurrency must be greater than 0, not 0"),
        ("heartbeat", -1.0, "--heartbeat must be greater than 0, not -1.0"),
        ("graceful_timeout", -2.0, "--graceful-timeout must be 0 or more, not -2.0"),
    ],
)
def test_bad_option_values_are_command_errors(option, value, message):
    with pytest.raises(CommandError, match=message):
        call_command("runrpc", str(free_port()), **{option: value})


def test_call_command_without_gevent_patching_is_refused():
    with pytest.raises(CommandError, match="monkey-patched"):
        call_command("runrpc", str(free_port()), use_reloader=False)


def test_zerorpc_command_line_client_calls_functions_and_streams(server):
    cli = [sys.executable, "-m", "django_zrpc.zerorpc_cli"]
    run = {"capture_output": True, "text": True, "timeout": 30}
    called = subprocess.run([*cli, "--json", server.endpoint, "echo", '{"a": [1, 2]}'], **run)
    assert called.returncode == 0, called.stderr
    assert called.stdout.strip() == "{'a': [1, 2]}"
    streamed = subprocess.run([*cli, "--json", server.endpoint, "count_up", "3"], **run)
    assert streamed.returncode == 0, streamed.stderr
    assert streamed.stdout.split() == ["0", "1", "2"]
    inspected = subprocess.run([*cli, "-?", server.endpoint], **run)
    assert inspected.returncode == 0, inspected.stderr
    assert "count_up(n, delay=0.0)" in inspected.stdout


@pytest.mark.parametrize(
    ("call", "error_name"),
    [
        (lambda client: client.echo(), "TypeError"),  # missing argument
        (lambda client: client.echo(1, 2), "TypeError"),  # one too many
        (lambda client: client.get_ticket("abc"), "ValueError"),  # wrong type
    ],
    ids=["missing-argument", "extra-argument", "wrong-type"],
)
def test_bad_arguments_are_remote_errors_and_the_server_goes_on(server, call, error_name):
    with server.client() as client:
        with pytest.raises(zerorpc.RemoteError) as caught:
            call(client)
        assert caught.value.name == error_name
        assert client.echo("fine") == "fine"
