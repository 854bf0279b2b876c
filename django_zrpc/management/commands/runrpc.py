"""``manage.py runrpc [addrport]``: serve the registered RPC functions on gevent.

Shaped like runserver: ``handle`` parses and validates (``CommandError``),
``run`` starts the autoreloader or not, ``inner_run`` checks and serves.
"""

from __future__ import annotations

import errno
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

LAUNCHER = "django_zrpc.launcher"


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
            "--noreload",
            action="store_false",
            dest="use_reloader",
            help="Do not restart the server when code changes.",
        )
        parser.add_argument("--skip-checks", action="store_true", help="Skip system checks.")

    def handle(self, *args: Any, **options: Any) -> None:
        options["addrport"] = self._parse_addrport(options["addrport"])
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
        self.run(**options)

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
        # Errors raised before the reloader's first run, e.g. in rpcs.py.
        autoreload.raise_last_exception()
        from django_zrpc.server import build_server, connection_limits

        _ensure_log_handler()
        if not options["skip_checks"]:
            self.stdout.write("Performing system checks...\n\n")
            self.check(display_num_errors=True)
        self.check_migrations()

        addrport: AddrPort = options["addrport"]
        server = build_server(
            heartbeat=options["heartbeat"],
            concurrency=options["concurrency"],
            backlog=options["backlog"],
            curve=options["curve"],
        )
        for warning in [*connection_limits(server), *_heartbeat_warnings(server.heartbeat)]:
            self.stderr.write(f"Warning: {warning}")
        # The checks ran queries in this greenlet, which never serves a call:
        # do not hold its connection for the server's lifetime.
        connections.close_all()
        if options["curve"] is None and not addrport.is_loopback:
            self.stderr.write(
                f"Warning: {addrport.host} is reachable from other machines and CURVE is off: "
                "anyone who reaches the port can call every function. See 'Securing a "
                "deployment' in django-zrpc's README."
            )
        try:
            endpoint = self._bind(server, addrport)
        except CommandError as err:
            server.close()
            self._fail(str(err), options["use_reloader"])
        for signum in (signal.SIGTERM, signal.SIGINT):
            _install_stop_handler(signum, server, options["graceful_timeout"])
        self._print_banner(endpoint, server, options)
        try:
            server.run()
        finally:
            server.close()
        if server.failure:
            self._fail(server.failure, options["use_reloader"])
        self.stdout.write("Server stopped.\n")
        self.stdout.flush()
        if options["use_reloader"]:
            # Under the autoreloader the server runs beside the file watcher,
            # which never returns; leave the process ourselves.
            os._exit(0)

    def _bind(self, server: Any, addrport: AddrPort) -> str:
        import zmq

        host = addrport.host
        if not addrport.ipv6 and not _is_ip(host):
            try:
                address = socket.getaddrinfo(host, addrport.port, type=socket.SOCK_STREAM)[0][4]
                host = str(address[0])
            except OSError as err:
                raise CommandError(f"Cannot resolve host {addrport.host!r}: {err}.") from err
        endpoint = AddrPort(host, addrport.port, ipv6=":" in host).endpoint
        try:
            server.bind(endpoint)
        except zmq.ZMQError as err:
            if err.errno == errno.EADDRINUSE:
                raise CommandError(f"Port {addrport.port} on {host} is already in use.") from err
            raise CommandError(f"Cannot listen on {endpoint}: {err}.") from err
        return endpoint

    def _fail(self, message: str, use_reloader: bool) -> None:
        if not use_reloader:
            raise CommandError(message)
        # Like runserver: an exception here would only end the reloader's
        # server thread and leave the process hanging.
        self.stderr.write(f"Error: {message}")
        os._exit(1)

    def _print_banner(self, endpoint: str, server: Any, options: dict[str, Any]) -> None:
        quit_command = "CTRL-BREAK" if sys.platform == "win32" else "CONTROL-C"
        self.stdout.write(
            f"{datetime.now().strftime('%B %d, %Y - %X')}\n"
            f"Django version {django.get_version()}, django-zrpc {django_zrpc.__version__}, "
            f"using settings {settings.SETTINGS_MODULE!r}\n"
            f"Serving {len(server.function_names)} RPC functions at {endpoint} "
            f"(heartbeat {server.heartbeat}s, concurrency {server.concurrency}, "
            f"backlog {server.backlog})\n"
            f"{_curve_line(server.curve)}"
            f"Quit the server with {quit_command}.\n"
        )
        self.stdout.flush()


def _heartbeat_warnings(heartbeat: float) -> list[str]:
    """Warn of a heartbeat that stock zerorpc clients (5 s, lost after 10 s) cannot follow."""
    from django_zrpc.core.protocol import PEER_HEARTBEAT

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


def _install_stop_handler(signum: int, server: Any, grace: float) -> None:
    import gevent

    gevent.signal_handler(signum, server.stop, grace)


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
