"""The worker's side of ``runrpc --workers N``: what a worker process owes its supervisor.

A worker is ``manage.py runrpc`` started by the supervisor (``supervisor.py``)
with the hidden option ``--worker listen=FD,ready=FD,stderr=FD,supervisor=PID``:
it listens on the port the supervisor holds (``listen``: a socket bound there,
not listening), with a socket of its own and ``SO_REUSEPORT``, sends its
start-up errors to the supervisor (which shows them, and quotes them if the
worker never gets to serve), gives its stderr back (``stderr``) and says
``ready`` (``ready``) once it serves, and ends at once when the supervisor is gone.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass

from django_zrpc.addrport import AddrPort

READY = b"ready\n"
# Linux's prctl(PR_SET_PDEATHSIG): the kernel signals us when our parent ends.
_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class WorkerHandles:
    """The descriptors a worker inherits, and the supervisor that started it."""

    listen: int
    ready: int
    stderr: int
    supervisor: int

    def format(self) -> str:
        return (
            f"listen={self.listen},ready={self.ready},stderr={self.stderr},"
            f"supervisor={self.supervisor}"
        )

    @classmethod
    def parse(cls, text: str) -> WorkerHandles:
        """Read ``format()``'s text; raise ``ValueError`` saying what is wrong."""
        try:
            fields = dict(item.split("=", 1) for item in text.split(","))
            return cls(**{name: int(value) for name, value in fields.items()})
        except (TypeError, ValueError) as err:
            raise ValueError(
                f"--worker {text!r} is not 'listen=FD,ready=FD,stderr=FD,supervisor=PID'; "
                "only runrpc --workers starts workers."
            ) from err


def reuseport_socket(host: str, port: int) -> socket.socket:
    """Return a TCP socket bound to ``host:port`` with ``SO_REUSEPORT``, not listening yet."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def listener(held: int) -> tuple[str, int]:
    """Listen on the address of the supervisor's socket ``held``: return its endpoint and our fd.

    Our own socket with ``SO_REUSEPORT`` beside every other worker's (see
    ``supervisor.py``), listening; ZeroMQ takes the descriptor (``ZMQ_USE_FD``).
    """
    # A socket object of our own on a copy: closing it leaves ``held`` open.
    with socket.socket(fileno=os.dup(held)) as sock:
        host, port = sock.getsockname()[:2]
    os.close(held)  # the supervisor's: this process needs it no more
    own = reuseport_socket(host, port)
    own.listen(socket.SOMAXCONN)
    return AddrPort(host, port, ipv6=":" in host).endpoint, own.detach()


def end_with_supervisor(handles: WorkerHandles) -> None:
    """Have this process killed when the supervisor ends (Linux), and ignore SIGHUP.

    SIGKILL, not a drain: a supervisor that is gone was killed (SIGKILL, the
    OOM killer), and whoever restarts it needs the port at once. Draining
    orphans held it for the graceful timeout and more, and the restarted
    supervisor failed with "Port ... is already in use" until they ended.
    A terminal's hangup is the supervisor's to act on (it replaces the
    workers), not the workers'.
    """
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    libc_name = ctypes.util.find_library("c")
    if libc_name is not None:
        try:
            prctl = ctypes.CDLL(libc_name, use_errno=True).prctl
        except (OSError, AttributeError):
            pass  # not Linux: watch_supervisor() alone notices
        else:
            prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    if os.getppid() != handles.supervisor:
        end_now()  # it ended while this process started, before the signal was asked for


def end_now() -> None:
    """End this process at once, as the kernel does when the supervisor ends."""
    os.kill(os.getpid(), signal.SIGKILL)


def watch_supervisor(handles: WorkerHandles, on_gone: Callable[[], None] = end_now) -> None:
    """Call ``on_gone`` once this process's parent is no longer the supervisor; run forever.

    Covers systems without prctl. Run it in a greenlet.
    """
    import gevent

    while os.getppid() == handles.supervisor:
        gevent.sleep(0.5)
    on_gone()


def hand_back_stderr(handles: WorkerHandles) -> None:
    """Write to the supervisor's own stderr from now on, not to the pipe it reads.

    Until the worker serves, its stderr is a pipe the supervisor reads, so that
    it can quote why a worker that never served ended; after, the call log
    goes straight to the terminal or journal, at no cost to the supervisor.
    """
    sys.stderr.flush()
    os.dup2(handles.stderr, 2)
    os.close(handles.stderr)


def say_ready(handles: WorkerHandles) -> None:
    """Tell the supervisor that this worker serves."""
    os.write(handles.ready, READY)
    os.close(handles.ready)
