"""A runrpc's memory after large values: given back, not kept for the process's lifetime."""

from __future__ import annotations

import subprocess
import sys
import time

from tests.conftest import ROOT, subprocess_env

MB = 1024 * 1024

# A separate process, as a caller is: its own memory is not the server's.
ECHO_LARGE = """
import sys
from django_zrpc.client.gevent.connection import Client

client = Client(sys.argv[1], timeout=60)
value = b"x" * (15 * 1024 * 1024)
for _ in range(int(sys.argv[2])):
    assert client.call("echo", value) == value
client.close()
"""


def rss(pid: int) -> int:
    """The resident memory of process ``pid``, in bytes (/proc/PID/status)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS in /proc/{pid}/status")


def echo_large(endpoint: str, count: int) -> None:
    subprocess.run(
        [sys.executable, "-c", ECHO_LARGE, endpoint, str(count)],
        cwd=ROOT,
        env=subprocess_env(),
        check=True,
        timeout=120,
    )


def test_large_values_leave_the_server_within_20_mb_of_where_it_was(start_server):
    server = start_server()
    with server.client() as client:
        for n in range(20):
            assert client.echo(n) == n
    baseline = rss(server.proc.pid)
    for _ in range(3):
        echo_large(server.endpoint, 5)
    # Given back when the caller left (the heap is trimmed every 10 s
    # after a peer leaves): wait for it, with the trim's period and more.
    deadline = time.monotonic() + 40
    after = rss(server.proc.pid)
    while after > baseline + 20 * MB and time.monotonic() < deadline:
        time.sleep(0.5)
        after = rss(server.proc.pid)
    assert after <= baseline + 20 * MB, (
        f"RSS {baseline / MB:.0f} MB before 15 echoes of 15 MB, {after / MB:.0f} MB after"
    )
