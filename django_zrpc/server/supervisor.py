"""``runrpc --workers N``: one address, N worker processes, supervised like gunicorn's.

The supervisor holds the TCP port and starts N workers, fresh ``manage.py
runrpc`` interpreters (through the gevent launcher) that each listen on it
with ``SO_REUSEPORT`` (``ZMQ_USE_FD``): the kernel spreads new connections
over their listeners by a hash of each connection's addresses, and a call
stays on the process whose connection carried it, with its heartbeats and
stream credits. One listening socket shared by every worker is
the other way: measured, it handed a burst of 16 connections opened at once
to one worker 12 to 16 times out of 16, where ``SO_REUSEPORT`` spread them
8/8, 11/5, 8/8 over two; a pool opening its connections is such a burst.

- A worker that dies is replaced at once; one that ends before it serves is
  tried again after a back-off, and after ``MAX_START_FAILURES`` such ends in a
  row the supervisor stops, quoting the last one's stderr.
- SIGTERM or SIGINT: every worker drains (``--graceful-timeout``), then the
  supervisor returns. SIGHUP: each worker in turn is replaced, its successor
  serving before it is told to drain.

The supervisor holds no database connection and never imports the server.
"""

from __future__ import annotations

import errno
import os
import signal
import socket
import subprocess
import time
from collections import deque
from collections.abc import Callable

import gevent
import gevent.event
import gevent.os
import gevent.queue

from django_zrpc.server.worker import READY, WorkerHandles, reuseport_socket

#: Workers that end before serving, in a row, before the supervisor gives up.
MAX_START_FAILURES = 3
#: Seconds a draining worker may take past --graceful-timeout before it is killed.
KILL_AFTER = 5.0
_TAIL_BYTES = 4096
_TAIL_LINES = 15


class WorkersFailed(Exception):
    """Workers cannot start: the supervisor stops, and runrpc exits with 1.

    Internal to runrpc, which turns it into a ``CommandError``: not a public class.
    """


def listen(host: str, port: int, retry_for: float = 0.0) -> socket.socket:
    """Hold ``host:port`` for the workers: a socket bound there that never listens.

    The port must be free first, bound without ``SO_REUSEPORT``: another
    server of the same user must not share it by accident. ``retry_for``:
    seconds to retry while it is in use, as it is under the autoreloader until
    the previous workers have drained. Bound but not listening, the socket
    takes no connection; the workers' listeners join it on the same port.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    deadline = time.monotonic() + retry_for
    while True:
        probe = socket.socket(family, socket.SOCK_STREAM)
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
            port = probe.getsockname()[1]  # port 0: the one the system chose
            probe.close()
            return reuseport_socket(host, port)
        except OSError as err:
            probe.close()
            if err.errno != errno.EADDRINUSE or time.monotonic() >= deadline:
                raise
        gevent.sleep(0.1)


class _Worker:
    """A worker process, what it wrote to stderr before serving, and whether it serves."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        self.serving = False
        self.retiring = False
        # True once it serves, False if it ended first.
        self.outcome: gevent.event.AsyncResult = gevent.event.AsyncResult()
        self.tail: deque[bytes] = deque()

    def signal(self, signum: int) -> None:
        try:
            self.proc.send_signal(signum)
        except ProcessLookupError:
            pass  # it ended already; its exit is on its way

    def error(self) -> str:
        text = b"".join(self.tail).decode(errors="replace")
        lines = [line for line in text.splitlines() if line.strip()]
        return "\n".join(lines[-_TAIL_LINES:]) or "(it wrote nothing to stderr)"

    def ending(self) -> str:
        code = self.proc.returncode
        if code is not None and code < 0:
            return f"was killed by {signal.Signals(-code).name}"
        return f"exited with {code}"


class Supervisor:
    """Keep ``count`` workers serving on ``listener`` until SIGTERM or SIGINT.

    ``argv`` starts one worker, to which ``--worker HANDLES`` is added;
    ``log`` writes a line to stderr; ``on_serving`` runs once, when the first
    ``count`` workers all serve; ``on_stop``, if given, when told to stop,
    before the workers are.
    """

    def __init__(
        self,
        listener: socket.socket,
        count: int,
        argv: list[str],
        grace: float,
        log: Callable[[str], None],
        on_serving: Callable[[], None],
        on_stop: Callable[[], None] | None = None,
        on_worker_exit: Callable[[int], None] | None = None,
    ) -> None:
        self._listener = listener
        self.count = count
        self._argv = argv
        self._grace = grace
        self._log = log
        self._on_serving = on_serving
        self._on_stop = on_stop
        self._on_worker_exit = on_worker_exit
        #: True from the moment SIGTERM or SIGINT arrives (the ops endpoint's /readyz).
        self.stopping = False
        self._workers: list[_Worker] = []
        self._events: gevent.queue.Queue[tuple[str, _Worker | None]] = gevent.queue.Queue()
        self._failures = 0
        self._announced = False
        self._replacing: gevent.Greenlet | None = None

    def run(self) -> None:
        """Supervise until told to stop; raise ``WorkersFailed`` if workers cannot start."""
        for signum in (signal.SIGTERM, signal.SIGINT):
            gevent.signal_handler(signum, self._on_stop_signal)
        gevent.signal_handler(signal.SIGHUP, self._events.put, ("reload", None))
        try:
            self._top_up()
            while True:
                kind, worker = self._events.get()
                if kind == "stop":
                    self._stop()
                    return
                self._handle(kind, worker)
        finally:
            self._kill_all()
            self._listener.close()

    def _on_stop_signal(self) -> None:
        self.stopping = True
        self._events.put(("stop", None))

    def problems(self) -> list[str]:
        """Return why the server is not ready, in sentences: stopping, or workers missing."""
        if self.stopping:
            return ["The server is stopping."]
        serving = len([w for w in self._workers if w.serving and not w.retiring])
        if serving < self.count:
            return [f"{serving} of {self.count} workers serve."]
        return []

    def _handle(self, kind: str, worker: _Worker | None) -> None:
        if kind == "reload":
            if self._replacing is None or self._replacing.dead:
                self._log("SIGHUP: replacing the workers one at a time.")
                self._replacing = gevent.spawn(self._replace_all)
        elif kind == "top_up":
            self._top_up()
        elif kind == "ready" and worker is not None:
            self._failures = 0
            serving = [w for w in self._workers if w.serving and not w.retiring]
            if not self._announced and len(serving) >= self.count:
                self._announced = True
                self._on_serving()
        elif kind == "exit" and worker is not None:
            self._on_exit(worker)

    def _on_exit(self, worker: _Worker) -> None:
        self._workers.remove(worker)
        if worker.retiring:
            return
        pid = worker.proc.pid
        if worker.serving:
            self._log(f"Worker {pid} {worker.ending()}; starting another.")
            self._top_up()
            return
        self._failures += 1
        if self._failures >= MAX_START_FAILURES:
            raise WorkersFailed(
                f"{self._failures} workers in a row ended before serving; the last one, "
                f"process {pid}, {worker.ending()} and wrote:\n{worker.error()}"
            )
        delay = self._backoff()
        self._log(
            f"Worker {pid} {worker.ending()} before serving ({self._failures} of "
            f"{MAX_START_FAILURES} tries); trying again in {delay:g} s."
        )
        gevent.spawn_later(delay, self._events.put, ("top_up", None))

    def _backoff(self) -> float:
        return min(0.5 * 2 ** max(self._failures - 1, 0), 5.0)

    def _top_up(self) -> None:
        """Start workers until ``count`` of them serve or are starting."""
        while len([w for w in self._workers if not w.retiring]) < self.count:
            self._start()

    def _replace_all(self) -> None:
        """Replace each worker of now by a new one, which serves before the old one drains."""
        for old in [w for w in self._workers if not w.retiring]:
            for _ in range(MAX_START_FAILURES):
                if old not in self._workers:
                    break  # it died meanwhile, and was replaced as any dead worker is
                new = self._start()
                if new.outcome.get():
                    old.retiring = True
                    old.signal(signal.SIGTERM)
                    break
                gevent.sleep(self._backoff())  # _on_exit counted the failure
        serving = [str(w.proc.pid) for w in self._workers if not w.retiring]
        self._log(f"SIGHUP: workers replaced; serving with {', '.join(serving)}.")

    def _start(self) -> _Worker:
        ready_r, ready_w = os.pipe()
        stderr_r, stderr_w = os.pipe()
        own_stderr = os.dup(2)
        handles = WorkerHandles(
            listen=self._listener.fileno(),
            ready=ready_w,
            stderr=own_stderr,
            supervisor=os.getpid(),
        )
        try:
            proc = subprocess.Popen(
                [*self._argv, "--worker", handles.format()],
                pass_fds=(handles.listen, ready_w, own_stderr),
                stdin=subprocess.DEVNULL,
                stderr=stderr_w,
            )
        except OSError as err:
            os.close(ready_r)
            os.close(stderr_r)
            raise WorkersFailed(f"Cannot start a worker process {self._argv!r}: {err}.") from err
        finally:
            for fd in (ready_w, stderr_w, own_stderr):
                os.close(fd)
        worker = _Worker(proc)
        self._workers.append(worker)
        gevent.spawn(self._watch, worker, ready_r, stderr_r)
        return worker

    def _watch(self, worker: _Worker, ready_r: int, stderr_r: int) -> None:
        """Report the worker's readiness, then its end, as events."""
        copier = gevent.spawn(_copy_stderr, stderr_r, worker.tail)
        if READY in _read_to_end(ready_r):
            worker.serving = True
            worker.outcome.set(True)
            self._events.put(("ready", worker))
        worker.proc.wait()
        if self._on_worker_exit is not None:
            self._on_worker_exit(worker.proc.pid)
        copier.join(timeout=2)
        if not worker.outcome.ready():
            worker.outcome.set(False)
        self._events.put(("exit", worker))

    def _stop(self) -> None:
        """Drain every worker; kill those still there ``KILL_AFTER`` s past the grace."""
        if self._on_stop is not None:
            self._on_stop()
        if self._replacing is not None:
            self._replacing.kill()
        for worker in self._workers:
            worker.retiring = True
            worker.signal(signal.SIGTERM)
        deadline = time.monotonic() + self._grace + KILL_AFTER
        while self._workers and time.monotonic() < deadline:
            try:
                kind, worker = self._events.get(timeout=deadline - time.monotonic())
            except gevent.queue.Empty:
                break
            if kind == "exit" and worker is not None:
                self._workers.remove(worker)
        for worker in self._workers:
            self._log(f"Worker {worker.proc.pid} did not drain in time; killing it.")

    def _kill_all(self) -> None:
        """Leave no worker behind, whatever ended the supervisor."""
        for worker in self._workers:
            worker.signal(signal.SIGKILL)
        for worker in self._workers:
            try:
                worker.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        self._workers.clear()


def _read_to_end(fd: int) -> bytes:
    os.set_blocking(fd, False)
    data = b""
    try:
        while chunk := gevent.os.nb_read(fd, 64):
            data += chunk
    finally:
        os.close(fd)
    return data


def _copy_stderr(fd: int, tail: deque[bytes]) -> None:
    """Copy a starting worker's stderr to ours, keeping its last few KiB."""
    os.set_blocking(fd, False)
    kept = 0
    try:
        while chunk := gevent.os.nb_read(fd, 65536):
            os.write(2, chunk)
            tail.append(chunk)
            kept += len(chunk)
            while kept - len(tail[0]) > _TAIL_BYTES:
                kept -= len(tail.popleft())
    finally:
        os.close(fd)
