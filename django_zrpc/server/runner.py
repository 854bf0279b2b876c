"""Running ``manage.py runrpc`` once its options are parsed: one server, or a supervisor.

The command parses the options, runs the checks and prints; ``Runner`` builds
the server (or the supervisor of ``--workers``), binds it, handles signals,
serves the ops endpoint and announces it until it stops. What it prints or
fails with goes through the command (``Reporter``), which owns the output.
"""

from __future__ import annotations

import errno
import functools
import logging
import os
import signal
import socket
import subprocess
import sys
from typing import Any, Protocol

from django.core.management.base import CommandError
from django.db import connections

from django_zrpc import conf
from django_zrpc.addrport import AddrPort
from django_zrpc.metrics import server_observer, worker_metrics
from django_zrpc.server.worker import WorkerHandles

LAUNCHER = "django_zrpc.launcher"
# Seconds a draining worker may hand over, refusing django_zrpc callers (who call again
# elsewhere) and serving the others, until none is refused (Server.quiet_linger).
WORKER_QUIET_LINGER = 5.0


class Reporter(Protocol):
    """What a ``Runner`` tells its command: the command does the printing."""

    def warn(self, options: dict[str, Any], concurrency: int, heartbeat: float) -> None: ...

    def print_banner(
        self, endpoint: str, functions: int, limits: str, options: dict[str, Any]
    ) -> None: ...

    def fail(self, message: str, use_reloader: bool) -> None: ...

    def log(self, message: str) -> None: ...

    def say_stopped(self, use_reloader: bool) -> None: ...


class Runner:
    """Serve with ``options`` (runrpc's, parsed) until the server stops."""

    def __init__(self, reporter: Reporter, options: dict[str, Any]) -> None:
        self.reporter = reporter
        self.options = options

    def run(self) -> None:
        if self.options["workers"] > 1:
            self._supervise()
        else:
            self._serve()

    def _serve(self) -> None:
        """Serve as one process: alone, or as a worker of a supervisor."""
        options = self.options
        worker: WorkerHandles | None = options["worker"]
        observer = server_observer(options["ops"])
        server = self._build(observer, worker)
        try:
            endpoint = _bind(server, options["addrport"], worker)
        except CommandError as err:
            server.close()
            self.reporter.fail(str(err), options["use_reloader"])
        announcer = options["announcer"]
        for signum in (signal.SIGTERM, signal.SIGINT):
            install_stop_handler(signum, server, options["graceful_timeout"], announcer)
        if worker is None:
            ignore_hangup()
        ops_server = self._observe(server, observer)
        if worker is None:
            limits = format_limits(server.heartbeat, server.concurrency, server.backlog)
            self.reporter.print_banner(endpoint, len(server.function_names), limits, options)
        else:
            report_to_supervisor(worker)
        if announcer is not None:
            announcer.start()
        try:
            server.run()
        finally:
            if ops_server is not None:
                ops_server.stop(timeout=0)
            server.close()
            if announcer is not None:
                announcer.withdraw()
        if server.failure:
            self.reporter.fail(server.failure, options["use_reloader"])
        if worker is None:
            self.reporter.say_stopped(options["use_reloader"])

    def _build(self, observer: Any, worker: WorkerHandles | None) -> Any:
        """Build the server, warn of its limits, and let go of the checks' connections."""
        from django_zrpc.server.build import build_server

        options = self.options
        server = build_server(
            observer=observer,
            heartbeat=options["heartbeat"],
            concurrency=options["concurrency"],
            backlog=options["backlog"],
            curve=options["curve"],
            # Callers told ServerStopping reconnect, and may land here again.
            quiet_linger=WORKER_QUIET_LINGER if worker is not None else 0.0,
        )
        if worker is None:
            self.reporter.warn(options, server.concurrency, server.heartbeat)
        # The checks ran queries in this greenlet, which never serves a call:
        # do not hold its connection for the server's lifetime.
        connections.close_all()
        return server

    def _observe(self, server: Any, observer: Any) -> Any:
        """Serve the ops endpoint of a lone server and return it; a worker samples its gauges."""
        options = self.options
        if observer is not None:
            observer.known = server.served_names
        if options["worker"] is not None:
            if observer is not None:  # its supervisor serves them, summed
                from django_zrpc.metrics.exposition import keep_sampling

                keep_sampling(functools.partial(observer.sample, server))
            return None
        if options["ops"] is None:
            return None
        from django_zrpc.server import ops

        try:
            return self._serve_ops(ops.for_server(server, observer))
        except CommandError as err:
            server.close()
            self.reporter.fail(str(err), options["use_reloader"])
            return None

    def _supervise(self) -> None:
        """Listen once and keep ``--workers`` processes serving there."""
        options = self.options
        use_reloader = options["use_reloader"]
        supervisor, metrics = self._start_supervisor()
        announcer = options["announcer"]
        ops_server = None
        if options["ops"] is not None:
            from django_zrpc.server import ops

            try:
                ops_server = self._serve_ops(ops.for_supervisor(supervisor, metrics))
            except CommandError as err:
                self.reporter.fail(str(err), use_reloader)
        from django_zrpc.server.supervisor import WorkersFailed

        try:
            supervisor.run()
        except WorkersFailed as err:
            self.reporter.fail(str(err), use_reloader)
        finally:
            if announcer is not None:
                announcer.withdraw()
            if ops_server is not None:
                ops_server.stop(timeout=0)
            if metrics is not None:
                metrics.close()
        self.reporter.say_stopped(use_reloader)

    def _start_supervisor(self) -> tuple[Any, Any]:
        """Listen on the address and make the workers' supervisor; return it and its metrics."""
        from django_zrpc.registry import rpc
        from django_zrpc.server.supervisor import Supervisor, listen

        options = self.options
        heartbeat, concurrency, backlog = per_worker(options)
        self.reporter.warn(options, concurrency, heartbeat)
        # No worker may share a connection with the supervisor, which holds none.
        connections.close_all()
        use_reloader = options["use_reloader"]
        addrport = resolve(options["addrport"])
        try:
            # Under the autoreloader the previous workers may still be draining.
            grace = options["graceful_timeout"] + 5 if use_reloader else 0.0
            listener = listen(addrport.host, addrport.port, retry_for=grace)
        except OSError as err:
            self.reporter.fail(listen_error(addrport, err), use_reloader)
        banner = functools.partial(
            self.reporter.print_banner,
            addrport.endpoint,
            len(list(rpc)),
            format_limits(heartbeat, concurrency, backlog),
            options,
        )
        announcer = options["announcer"]

        def on_serving() -> None:
            banner()
            if announcer is not None:
                announcer.start()

        metrics = worker_metrics(options["ops"])
        supervisor = Supervisor(
            listener,
            options["workers"],
            worker_argv(),
            options["graceful_timeout"],
            self.reporter.log,
            on_serving,
            on_stop=None if announcer is None else announcer.start_draining,
            on_worker_exit=metrics.worker_exited if metrics is not None else None,
        )
        return supervisor, metrics

    def _serve_ops(self, app: Any) -> Any:
        """Serve the ops endpoint in this event loop; fail as runrpc does if its port is taken."""
        from django_zrpc.server import ops

        addrport = resolve(self.options["ops"])
        try:
            ops_server = ops.serve(
                addrport,
                app,
                max_connections=conf.get("OPS_MAX_CONNECTIONS"),
                header_timeout=conf.get("OPS_HEADER_TIMEOUT"),
            )
        except OSError as err:
            message = listen_error(addrport, err)
            raise CommandError(f"The ops endpoint cannot start: {message}") from err
        host = f"[{addrport.host}]" if addrport.ipv6 else addrport.host
        self.options["ops_url"] = f"http://{host}:{ops_server.server_port}"
        return ops_server


def resolve(addrport: AddrPort) -> AddrPort:
    """Return ``addrport`` with its host name resolved to an address."""
    host = addrport.host
    if not addrport.ipv6 and not _is_ip(host):
        try:
            address = socket.getaddrinfo(host, addrport.port, type=socket.SOCK_STREAM)[0][4]
            host = str(address[0])
        except OSError as err:
            raise CommandError(f"Cannot resolve host {addrport.host!r}: {err}.") from err
    return AddrPort(host, addrport.port, ipv6=":" in host)


def _bind(server: Any, addrport: AddrPort, worker: WorkerHandles | None = None) -> str:
    import zmq

    if worker is not None:
        # A listener of our own on the supervisor's port (SO_REUSEPORT).
        from django_zrpc.server.worker import listener

        endpoint, fd = listener(worker.listen)
        return server.bind(endpoint, fd=fd)
    resolved = resolve(addrport)
    try:
        server.bind(resolved.endpoint)
    except zmq.ZMQError as err:
        raise CommandError(listen_error(resolved, err)) from err
    return resolved.endpoint


def raise_open_file_limit() -> None:
    """Raise the soft limit on open files to the hard one, as nginx and Go's runtime do.

    Each peer of the RPC socket and each ops connection holds a descriptor;
    a soft limit of 1,024 (a common default) is reached by a crowd that the
    machine could serve. Only the hard limit is the administrator's say.
    """
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):  # a hard limit above what the kernel allows (macOS)
            pass


def per_worker(options: dict[str, Any]) -> tuple[float, int, int]:
    """Return the heartbeat, concurrency and backlog each worker serves with."""
    heartbeat = options["heartbeat"] if options["heartbeat"] is not None else conf.get("HEARTBEAT")
    concurrency = options["concurrency"] or conf.get("CONCURRENCY")
    backlog = options["backlog"] if options["backlog"] is not None else conf.get("BACKLOG")
    return heartbeat, concurrency, concurrency if backlog is None else backlog


def format_limits(heartbeat: float, concurrency: int, backlog: int) -> str:
    return f"heartbeat {heartbeat}s, concurrency {concurrency}, backlog {backlog}"


def listen_error(addrport: AddrPort, err: Exception) -> str:
    """Say why listening failed (``err``: an ``OSError`` or a ``zmq.ZMQError``)."""
    if getattr(err, "errno", None) == errno.EADDRINUSE:
        return f"Port {addrport.port} on {addrport.host} is already in use."
    return f"Cannot listen on {addrport.endpoint}: {err}."


def worker_argv() -> list[str]:
    """Return the command that starts one worker: this command, patched, as one process."""
    flags = subprocess._args_from_interpreter_flags()  # type: ignore[attr-defined]
    return [
        sys.executable,
        *flags,
        "-m",
        LAUNCHER,
        *main_target(),
        *sys.argv[1:],
        # The last of a repeated option wins: each worker is one server.
        "--workers",
        "1",
        "--noreload",
    ]


def report_to_supervisor(worker: WorkerHandles) -> None:
    """Say that this worker serves, and end it should its supervisor end."""
    import gevent

    from django_zrpc.server.worker import hand_back_stderr, say_ready, watch_supervisor

    hand_back_stderr(worker)
    say_ready(worker)
    gevent.spawn(watch_supervisor, worker)


def heartbeat_warnings(heartbeat: float) -> list[str]:
    """Warn of a heartbeat that stock zerorpc clients (5 s, lost after 10 s) cannot follow."""
    from django_zrpc.wire.protocol import PEER_HEARTBEAT

    if heartbeat <= PEER_HEARTBEAT:
        return []
    return [
        f"--heartbeat {heartbeat:g} is longer than zerorpc's default of {PEER_HEARTBEAT:g} s: "
        f"a stock zerorpc client declares this server lost after {2 * PEER_HEARTBEAT:g} s "
        "without a heartbeat, and fails every call that lasts longer. django_zrpc clients "
        "follow the server's period."
    ]


def main_target() -> list[str]:
    """Return how this process was started: ``["-m", module]`` or ``[script]``."""
    import __main__

    spec = getattr(__main__, "__spec__", None)
    if spec is not None:  # python -m django runrpc
        return ["-m", spec.name.removesuffix(".__main__")]
    if not os.path.isfile(sys.argv[0]):
        raise CommandError(
            f"runrpc cannot re-run {sys.argv[0]!r} in a gevent-patched interpreter: it "
            "is not a file. Run it as `python manage.py runrpc` or `django-admin runrpc`."
        )
    return [sys.argv[0]]


def install_stop_handler(signum: int, server: Any, grace: float, announcer: Any) -> None:
    import gevent

    def stop() -> None:
        if announcer is not None:
            # Clients stop sending here as soon as Redis has it; calls that
            # arrive meanwhile are refused (ServerStopping) and sent elsewhere.
            announcer.start_draining()
        server.stop(grace)

    gevent.signal_handler(signum, stop)


def ignore_hangup() -> None:
    """Keep serving on SIGHUP, with a warning that says how to reload.

    By default SIGHUP ends a process at once, calls in flight and all. One
    process cannot reload without closing its port for a moment (only
    ``--workers`` keeps a listener open while the new code starts), and a
    hangup is as often a closed terminal as a reload: so it is refused,
    loudly, rather than obeyed halfway.
    """
    import gevent

    def warn() -> None:
        logging.getLogger("django_zrpc.server").warning(
            "SIGHUP ignored: a single runrpc process cannot reload without closing its "
            "port. Run runrpc --workers 2 (or more) to reload on SIGHUP, or restart it "
            "(SIGTERM drains it first)."
        )

    gevent.signal_handler(signal.SIGHUP, warn)


def _is_ip(host: str) -> bool:
    try:
        socket.inet_pton(socket.AF_INET, host)
    except OSError:
        return False
    return True
