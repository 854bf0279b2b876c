"""The servers of the benchmark, each started as a process of its own on 127.0.0.1.

Two are defined here and run as ``python -m benchmarks.servers KIND PORT``:

- ``raw``: a pyzmq ROUTER answering every msgpack event with an OK event
  echoing its arguments (the floor);
- ``zerorpc``: a stock zerorpc 0.6.3 server of the functions ``runrpc``
  serves in the benchmark (``echo``, ``large_echo``, ``get_ticket``,
  ``ticket_list``), on
  gevent, Django set up with ``benchmarks.settings`` as ``runrpc`` would
  (monkey-patched first).

The others are the project's own commands (``manage.py runrpc``, gunicorn with
gevent workers) and nameko's ``nameko run``; :class:`Server` starts any of them,
waits until it is ready and stops it by its process id.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request

from benchmarks.common import ROOT, SETTINGS, children

READY_TIMEOUT = 60.0
# The zerorpc server opens a database connection per call (zerorpc spawns a
# greenlet per call, and Django's connections belong to the greenlet): at most
# this many at once, as runrpc --concurrency bounds its own.
DB_CONCURRENCY = 32


def serve_raw(port: int, max_message_bytes: int | None = None) -> None:
    """A bare pyzmq ROUTER echo; ``max_message_bytes``: with runrpc's MAXMSGSIZE option."""
    import msgpack
    import zmq

    sock = zmq.Context().socket(zmq.ROUTER)
    if max_message_bytes is not None:
        sock.setsockopt(zmq.MAXMSGSIZE, max_message_bytes)
    sock.bind(f"tcp://127.0.0.1:{port}")
    print("ready", flush=True)
    while True:
        *identity, _, blob = sock.recv_multipart()
        header, _name, args = msgpack.unpackb(blob, raw=False)
        reply = {"message_id": b"x" * 32, "v": 3, "response_to": header["message_id"]}
        sock.send_multipart([*identity, b"", msgpack.packb((reply, "OK", args), use_bin_type=True)])


def serve_zerorpc(port: int) -> None:
    from gevent import monkey

    monkey.patch_all()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", SETTINGS)
    import django

    django.setup()
    import gevent.lock
    import zerorpc
    from django.db import connections

    from testproject.tickets.models import Ticket

    database = gevent.lock.BoundedSemaphore(DB_CONCURRENCY)

    def plain(ticket):
        # What a stock zerorpc server must do itself: msgpack holds no Decimal
        # or datetime (runrpc sends these as text to plain zerorpc callers).
        row = ticket.as_dict()
        return {**row, "price": str(row["price"]), "created_at": row["created_at"].isoformat()}

    class Service:
        def echo(self, value):
            return value

        def large_echo(self, value):
            return value

        def get_ticket(self, id):
            with database:
                try:
                    return plain(Ticket.objects.get(pk=id))
                finally:
                    connections.close_all()  # this greenlet's: it ends with the call

        @zerorpc.stream
        def ticket_list(self, n=100):
            with database:
                try:
                    for ticket in Ticket.objects.order_by("id")[:n].iterator(chunk_size=1000):
                        yield plain(ticket)
                finally:
                    connections.close_all()

    server = zerorpc.Server(Service())
    server.bind(f"tcp://127.0.0.1:{port}")
    print("ready", flush=True)
    server.run()


class Server:
    """A server process we started: its endpoint, its process ids, and stop()."""

    def __init__(
        self,
        name: str,
        args: list[str],
        env: dict[str, str],
        port: int,
        ready: str | None,
        scheme: str = "tcp",
    ) -> None:
        self.name = name
        self.port = port
        self.endpoint = f"{scheme}://127.0.0.1:{port}"
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            args,
            cwd=ROOT,
            env={**env, "PYTHONUNBUFFERED": "1"},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self._ready = threading.Event()
        self._marker = ready
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:  # read to the end, so that a full pipe never blocks it
            if len(self.lines) < 200:
                self.lines.append(line.rstrip())
            if self._marker and self._marker in line:
                self._ready.set()

    def wait_ready(self, probe_url: str | None = None) -> Server:
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.proc.returncode}:\n"
                    + "\n".join(self.lines[-20:])
                )
            if probe_url is not None:
                try:
                    with urllib.request.urlopen(probe_url, timeout=2) as response:
                        if response.status == 200:
                            return self
                except OSError:
                    pass
            elif self._ready.wait(0.1):
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.name} was not ready within {READY_TIMEOUT:.0f}s")

    @property
    def pids(self) -> list[int]:
        """The server's process and its children (gunicorn's workers)."""
        return [self.proc.pid, *children(self.proc.pid)]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def main() -> None:
    {"raw": serve_raw, "zerorpc": serve_zerorpc}[sys.argv[1]](int(sys.argv[2]))


if __name__ == "__main__":
    main()
