"""``manage.py runrpc [addrport]``: serve the registered RPC functions on gevent.

Shaped like runserver: ``handle`` parses and validates (``CommandError``),
``run`` starts the autoreloader or not, ``inner_run`` checks and serves.
"""

from __future__ import annotations

import argparse
import errno
import functools
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime
from typing import Any

import django
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connections
from django.utils import autoreload
from gevent import monkey

import django_zrpc
from django_zrpc import conf
from django_zrpc.addrport import AddrPort, parse_addrport
from django_zrpc.management import require_rpcs_modules
from django_zrpc.metrics import server_observer, worker_metrics
from django_zrpc.server.worker import WorkerHandles, end_with_supervisor

LAUNCHER = "django_zrpc.launcher"
# Seconds a draining worker may hand over, refusing django_zrpc callers (who call again
# elsewhere) and serving the others, until none is refused (Server.quiet_linger).
WORKER_QUIET_LINGER = 5.0


class Command(BaseCommand):
    help = "Serve the project's registered RPC functions over zerorpc, on gevent."

    # Checks run in inner_run, as runserver does, so the autoreloader's child
    # reports them after every restart.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "addrport",
            nargs="?",
            help="Port, or ipaddr:port, to listen on (default: ZRPC_ADDRPORT, 127.0.0.1:4242).",
        )
        parser.add_argument(
            "--heartbeat",
            type=float,
            help="Seconds between heartbeats; a caller silent for two is lost "
            "(default: ZRPC_HEARTBEAT, 5).",
        )
        parser.add_argument(
            "--concurrency",
            type=int,
            help="The most calls served at once (default: ZRPC_CONCURRENCY, 100).",
        )
        parser.add_argument(
            "--backlog",
            type=int,
            help="Calls that may wait for a worker; past them a call is refused with "
            "ServerBusy at once (default: ZRPC_BACKLOG, as many as --concurrency).",
        )
        parser.add_argument(
            "--graceful-timeout",
            type=float,
            help="Seconds a stopping server gives running calls before ending them "
            "(default: ZRPC_GRACEFUL_TIMEOUT, 10).",
        )
        parser.add_argument(
            "--curve-secret",
            metavar="FILE",
            help="Encrypt with CURVE, using this server's NAME.key_secret file "
            "(default: ZRPC_CURVE_SECRET). Needs --curve-allow.",
        )
        parser.add_argument(
            "--curve-allow",
            metavar="DIR",
            help="Admit only the clients whose public NAME.key file is in DIR "
            "(default: ZRPC_CURVE_ALLOW).",
        )
        parser.add_argument(
            "--workers",
            type=int,
            help="Serve with N processes on the one address, supervised: each with every "
            "option above (default: ZRPC_WORKERS, 1). See 'Several processes'.",
        )
        parser.add_argument(
            "--announce",
            metavar="URL",
            help="Announce this server in Redis for clients that follow it: "
            "redis://HOST:6379/0?service=NAME (default: ZRPC_ANNOUNCE). See 'Many hosts'.",
        )
        parser.add_argument(
            "--announce-address",
            metavar="ENDPOINT",
            help="The tcp://HOST:PORT callers should dial (default: ZRPC_ANNOUNCE_ADDRESS, "
            "else the address listened on).",
        )
        parser.add_argument(
            "--ops",
            metavar="ADDRPORT",
            help="Serve /livez, /readyz and /metrics over HTTP at ADDRPORT, beside the RPC "
            "socket (default: ZRPC_OPS, none). See 'Health and metrics'.",
        )
        # How the supervisor starts a worker (django_zrpc.server.worker): not for people.
        parser.add_argument("--worker", help=argparse.SUPPRESS)
        parser.add_argument(
            "--noreload",
            action="store_false",
            dest="use_reloader",
            help="Do not restart the server when code changes.",
        )
        parser.add_argument("--skip-checks", action="store_true", help="Skip system checks.")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["worker"] is not None:
            options["worker"] = self._as_worker(options["worker"])
            options["use_reloader"] = False  # the supervisor's to do
        options["addrport"] = self._parse_addrport(options["addrport"])
        options["workers"] = _workers(options["workers"])
        options["ops"] = _ops_address(options["ops"])
        for name in ("heartbeat", "concurrency"):
            value = options[name]
            if value is not None and not value > 0:
                raise CommandError(f"--{name} must be greater than 0, not {value!r}.")
        if options["backlog"] is not None and options["backlog"] < 0:
            raise CommandError(f"--backlog must be 0 or more, not {options['backlog']!r}.")
        if options["graceful_timeout"] is None:
            options["graceful_timeout"] = conf.get("GRACEFUL_TIMEOUT")
        if not options["graceful_timeout"] >= 0:
            raise CommandError(
                f"--graceful-timeout must be 0 or more, not {options['graceful_timeout']!r}."
            )
        if not monkey.is_module_patched("socket"):
            self._relaunch_patched()
        from django_zrpc.curve import server_keys
        from django_zrpc.exceptions import CurveKeyError

        try:
            options["curve"] = server_keys(
                options["curve_secret"] or conf.get("CURVE_SECRET"),
                options["curve_allow"] or conf.get("CURVE_ALLOW"),
            )
        except CurveKeyError as err:
            raise CommandError(str(err)) from err
        options["announcer"] = None if options["worker"] else self._announcer(options)
        self.run(**options)

    def _announcer(self, options: dict[str, Any]) -> Any:
        """The announcer of ``--announce``, or None; a worker's supervisor announces."""
        source = options["announce"] or conf.get("ANNOUNCE")
        if source is None:
            return None
        from django_zrpc.exceptions import ZRPCConfigurationError
        from django_zrpc.server.announce import build_announcer

        addrport: AddrPort = options["addrport"]
        try:
            return build_announcer(
                source,
                options["announce_address"] or conf.get("ANNOUNCE_ADDRESS"),
                addrport.host,
                addrport.port,
                conf.get("ANNOUNCE_TTL"),
            )
        except ZRPCConfigurationError as err:
            raise CommandError(str(err)) from err

    def _as_worker(self, value: str) -> WorkerHandles:
        try:
            handles = WorkerHandles.parse(value)
        except ValueError as err:
            raise CommandError(str(err)) from err
        end_with_supervisor(handles)
        return handles

    def _parse_addrport(self, value: str | None) -> AddrPort:
        try:
            return parse_addrport(value if value is not None else conf.get("ADDRPORT"))
        except ValueError as err:
            raise CommandError(str(err)) from err

    def _relaunch_patched(self) -> None:
        """Replace this process with one that gevent patches before Django loads.

        Patching after Django and the database driver are imported leaves
        them blocking the loop, so calls would run one at a time.
        """
        if not getattr(self, "_called_from_command_line", False):
            raise CommandError(
                "runrpc must run in a process that gevent monkey-patched before "
                "importing Django; run it as `python manage.py runrpc`, not through "
                "call_command()."
            )
        # The interpreter's own flags (-W, -X ...), then the launcher, which
        # patches and runs the same script or module with the same arguments.
        flags = subprocess._args_from_interpreter_flags()  # type: ignore[attr-defined]
        argv = [sys.executable, *flags, "-m", LAUNCHER, *_main_target(), *sys.argv[1:]]
        sys.stdout.flush()
        sys.stderr.flush()
        os.execv(sys.executable, argv)

    def run(self, **options: Any) -> None:
        if options["use_reloader"]:
            autoreload.run_with_reloader(self.inner_run, **options)
        else:
            self.inner_run(**options)

    def inner_run(self, *args: Any, **options: Any) -> None:
        # As runserver does: an error that autoreload.check_errors() kept from
        # before this run. A broken rpcs.py is not one (see autodiscovery).
        autoreload.raise_last_exception()
        if self._rpcs_modules_broken(options["use_reloader"]):
            return
        from django_zrpc.server.build import build_server

        _ensure_log_handler()
        _raise_open_file_limit()
        worker: WorkerHandles | None = options["worker"]
        if worker is None:  # a worker's supervisor checked
            if not options["skip_checks"]:
                self.stdout.write("Performing system checks...\n\n")
                self.check(display_num_errors=True)
            self.check_migrations()
        if options["workers"] > 1:
            self._supervise(options)
            return

        observer = server_observer(options["ops"])
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
            self._warn(options, server.concurrency, server.heartbeat)
        # The checks ran queries in this greenlet, which never serves a call:
        # do not hold its connection for the server's lifetime.
        connections.close_all()
        try:
            endpoint = self._bind(server, options["addrport"], worker)
        except CommandError as err:
            server.close()
            self._fail(str(err), options["use_reloader"])
        announcer = options["announcer"]
        for signum in (signal.SIGTERM, signal.SIGINT):
            _install_stop_handler(signum, server, options["graceful_timeout"], announcer)
        if worker is None:
            _ignore_hangup()
        ops_server = self._observe(server, observer, options)
        if worker is None:
            limits = _limits(server.heartbeat, server.concurrency, server.backlog)
            self._print_banner(endpoint, len(server.function_names), limits, options)
        else:
            _report_to_supervisor(worker)
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
            self._fail(server.failure, options["use_reloader"])
        if worker is None:
            self._stopped(options["use_reloader"])

    def _rpcs_modules_broken(self, use_reloader: bool) -> bool:
        """Report each rpcs.py that failed to import; return True if one did.

        Without the autoreloader, raise ``CommandError`` instead. Under it the
        process stays up, as runserver's does for a broken models.py: it
        serves nothing, and restarts once the fix is saved.
        """
        from django_zrpc.autodiscovery import broken_modules

        broken = broken_modules()
        if not broken:
            return False
        if not use_reloader:
            require_rpcs_modules()
        for module in broken:
            self.stderr.write(f"Error: {module.sentence()}\n\n{module.report()}")
        self.stderr.write(
            "Watching for file changes: runrpc restarts and serves once the fix is saved."
        )
        self.stderr.flush()
        return True

    def _observe(self, server: Any, observer: Any, options: dict[str, Any]) -> Any:
        """Serve the ops endpoint of a lone server and return it; a worker samples its gauges."""
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
            return self._serve_ops(options, ops.for_server(server, observer))
        except CommandError as err:
            server.close()
            self._fail(str(err), options["use_reloader"])
            return None

    def _stopped(self, use_reloader: bool) -> None:
        self.stdout.write("Server stopped.\n")
        self.stdout.flush()
        if use_reloader:
            # Under the autoreloader the server runs beside the file watcher,
            # which never returns; leave the process ourselves.
            os._exit(0)

    def _warn(self, options: dict[str, Any], concurrency: int, heartbeat: float) -> None:
        """Warn of database connections past the limit, a long heartbeat, and CURVE off."""
        from django_zrpc.server.build import connection_limits

        limits = connection_limits(concurrency, processes=options["workers"])
        for warning in [*limits, *_heartbeat_warnings(heartbeat)]:
            self.stderr.write(f"Warning: {warning}")
        addrport: AddrPort = options["addrport"]
        if options["curve"] is None and not addrport.is_loopback:
            self.stderr.write(
                f"Warning: {addrport.host} is reachable from other machines and CURVE is off: "
                "anyone who reaches the port can call every function. See 'Securing a "
                "deployment' in django-zrpc's README."
            )

    def _supervise(self, options: dict[str, Any]) -> None:
        """Listen once and keep ``--workers`` processes serving there."""
        from django_zrpc.registry import rpc
        from django_zrpc.server.supervisor import Supervisor, WorkersFailed, listen

        heartbeat, concurrency, backlog = _per_worker(options)
        self._warn(options, concurrency, heartbeat)
        # No worker may share a connection with the supervisor, which holds none.
        connections.close_all()
        use_reloader = options["use_reloader"]
        addrport = self._resolve(options["addrport"])
        try:
            # Under the autoreloader the previous workers may still be draining.
            grace = options["graceful_timeout"] + 5 if use_reloader else 0.0
            listener = listen(addrport.host, addrport.port, retry_for=grace)
        except OSError as err:
            self._fail(_listen_error(addrport, err), use_reloader)
        count = options["workers"]
        banner = functools.partial(
            self._print_banner,
            addrport.endpoint,
            len(list(rpc)),
            _limits(heartbeat, concurrency, backlog),
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
            count,
            _worker_argv(),
            options["graceful_timeout"],
            self._log,
            on_serving,
            on_stop=None if announcer is None else announcer.start_draining,
            on_worker_exit=metrics.worker_exited if metrics is not None else None,
        )
        ops_server = None
        if options["ops"] is not None:
            from django_zrpc.server import ops

            try:
                ops_server = self._serve_ops(options, ops.for_supervisor(supervisor, metrics))
            except CommandError as err:
                self._fail(str(err), use_reloader)
        try:
            supervisor.run()
        except WorkersFailed as err:
            self._fail(str(err), use_reloader)
        finally:
            if announcer is not None:
                announcer.withdraw()
            if ops_server is not None:
                ops_server.stop(timeout=0)
            if metrics is not None:
                metrics.close()
        self._stopped(use_reloader)

    def _serve_ops(self, options: dict[str, Any], app: Any) -> Any:
        """Serve the ops endpoint in this event loop; fail as runrpc does if its port is taken."""
        from django_zrpc.server import ops

        addrport = self._resolve(options["ops"])
        try:
            ops_server = ops.serve(
                addrport,
                app,
                max_connections=conf.get("OPS_MAX_CONNECTIONS"),
                header_timeout=conf.get("OPS_HEADER_TIMEOUT"),
            )
        except OSError as err:
            message = _listen_error(addrport, err)
            raise CommandError(f"The ops endpoint cannot start: {message}") from err
        host = f"[{addrport.host}]" if addrport.ipv6 else addrport.host
        options["ops_url"] = f"http://{host}:{ops_server.server_port}"
        return ops_server

    def _log(self, message: str) -> None:
        self.stderr.write(f"[{datetime.now().strftime('%Y-%m-%d %H:%M:%S')}] {message}")
        self.stderr.flush()

    def _resolve(self, addrport: AddrPort) -> AddrPort:
        """Return ``addrport`` with its host name resolved to an address."""
        host = addrport.host
        if not addrport.ipv6 and not _is_ip(host):
            try:
                address = socket.getaddrinfo(host, addrport.port, type=socket.SOCK_STREAM)[0][4]
                host = str(address[0])
            except OSError as err:
                raise CommandError(f"Cannot resolve host {addrport.host!r}: {err}.") from err
        return AddrPort(host, addrport.port, ipv6=":" in host)

    def _bind(self, server: Any, addrport: AddrPort, worker: WorkerHandles | None = None) -> str:
        import zmq

        if worker is not None:
            # A listener of our own on the supervisor's port (SO_REUSEPORT).
            from django_zrpc.server.worker import listener

            endpoint, fd = listener(worker.listen)
            return server.bind(endpoint, fd=fd)
        resolved = self._resolve(addrport)
        try:
            server.bind(resolved.endpoint)
        except zmq.ZMQError as err:
            raise CommandError(_listen_error(resolved, err)) from err
        return resolved.endpoint

    def _fail(self, message: str, use_reloader: bool) -> None:
        if not use_reloader:
            raise CommandError(message)
        # Like runserver: an exception here would only end the reloader's
        # server thread and leave the process hanging.
        self.stderr.write(f"Error: {message}")
        os._exit(1)

    def _print_banner(
        self, endpoint: str, functions: int, limits: str, options: dict[str, Any]
    ) -> None:
        quit_command = "CTRL-BREAK" if sys.platform == "win32" else "CONTROL-C"
        workers = options["workers"]
        serving = f"{endpoint} ({limits})"
        if workers > 1:
            serving = f"{endpoint} with {workers} workers (each: {limits})"
        self.stdout.write(
            f"{datetime.now().strftime('%B %d, %Y - %X')}\n"
            f"Django version {django.get_version()}, django-zrpc {django_zrpc.__version__}, "
            f"using settings {settings.SETTINGS_MODULE!r}\n"
            f"Serving {functions} RPC functions at {serving}\n"
            f"{_curve_line(options['curve'])}"
            f"{_ops_line(options.get('ops_url'))}"
            f"Quit the server with {quit_command}.\n"
        )
        self.stdout.flush()


def _workers(value: int | None) -> int:
    """Return how many processes serve: ``--workers``, else ``ZRPC_WORKERS``."""
    if value is None:
        value = conf.get("WORKERS")
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise CommandError(f"ZRPC_WORKERS must be a positive integer, not {value!r}.")
    elif value < 1:
        raise CommandError(f"--workers must be 1 or more, not {value!r}.")
    return value


def _raise_open_file_limit() -> None:
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


def _ops_address(value: str | None) -> AddrPort | None:
    """Return where the ops endpoint listens (``--ops``, else ``ZRPC_OPS``), or None.

    Fail at once if its metrics are wanted and prometheus_client is missing.
    """
    from django_zrpc.metrics import missing_message, server_metrics_wanted

    option = "--ops"
    if value is None:
        value, option = conf.get("OPS"), "ZRPC_OPS"
    if value is None:
        return None
    try:
        addrport = parse_addrport(str(value))
    except ValueError as err:
        raise CommandError(f"{option} is invalid: {err}") from err
    message = missing_message() if server_metrics_wanted(addrport) else None
    if message is not None:
        raise CommandError(f"{message} Or set ZRPC_METRICS = False to serve health alone.")
    return addrport


def _ops_line(url: str | None) -> str:
    if url is None:
        return ""
    return f"Ops endpoint at {url}/ (/livez, /readyz, /metrics)\n"


def _per_worker(options: dict[str, Any]) -> tuple[float, int, int]:
    """Return the heartbeat, concurrency and backlog each worker serves with."""
    heartbeat = options["heartbeat"] if options["heartbeat"] is not None else conf.get("HEARTBEAT")
    concurrency = options["concurrency"] or conf.get("CONCURRENCY")
    backlog = options["backlog"] if options["backlog"] is not None else conf.get("BACKLOG")
    return heartbeat, concurrency, concurrency if backlog is None else backlog


def _limits(heartbeat: float, concurrency: int, backlog: int) -> str:
    return f"heartbeat {heartbeat}s, concurrency {concurrency}, backlog {backlog}"


def _listen_error(addrport: AddrPort, err: Exception) -> str:
    """Say why listening failed (``err``: an ``OSError`` or a ``zmq.ZMQError``)."""
    if getattr(err, "errno", None) == errno.EADDRINUSE:
        return f"Port {addrport.port} on {addrport.host} is already in use."
    return f"Cannot listen on {addrport.endpoint}: {err}."


def _worker_argv() -> list[str]:
    """Return the command that starts one worker: this command, patched, as one process."""
    flags = subprocess._args_from_interpreter_flags()  # type: ignore[attr-defined]
    return [
        sys.executable,
        *flags,
        "-m",
        LAUNCHER,
        *_main_target(),
        *sys.argv[1:],
        # The last of a repeated option wins: each worker is one server.
        "--workers",
        "1",
        "--noreload",
    ]


def _report_to_supervisor(worker: WorkerHandles) -> None:
    """Say that this worker serves, and end it should its supervisor end."""
    import gevent

    from django_zrpc.server.worker import hand_back_stderr, say_ready, watch_supervisor

    hand_back_stderr(worker)
    say_ready(worker)
    gevent.spawn(watch_supervisor, worker)


def _heartbeat_warnings(heartbeat: float) -> list[str]:
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


def _curve_line(curve: Any) -> str:
    if curve is None:
        return ""
    count = curve.allow.check()
    return f"CURVE on: admitting {count} client key(s) from {curve.allow.directory}\n"


def _main_target() -> list[str]:
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


def _install_stop_handler(signum: int, server: Any, grace: float, announcer: Any) -> None:
    import gevent

    def stop() -> None:
        if announcer is not None:
            # Clients stop sending here as soon as Redis has it; calls that
            # arrive meanwhile are refused (ServerStopping) and sent elsewhere.
            announcer.start_draining()
        server.stop(grace)

    gevent.signal_handler(signum, stop)


def _ignore_hangup() -> None:
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


class _CallLogFormatter(logging.Formatter):
    """Format the time once per second, not once per line: a line is logged per call."""

    _second = -1
    _formatted = ""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        second = int(record.created)
        if second != self._second:
            self._second = second
            self._formatted = time.strftime("%Y-%m-%d %H:%M:%S", self.converter(record.created))
        return f"{self._formatted},{int(record.msecs):03d}"


def _ensure_log_handler() -> None:
    """Show the per-call log at INFO unless the project's LOGGING handles it."""
    logger = logging.getLogger("django_zrpc")
    if logger.hasHandlers():
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_CallLogFormatter("[%(asctime)s] %(levelname)s %(message)s"))
    logger.addHandler(handler)
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.INFO)
