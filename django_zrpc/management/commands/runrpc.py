"""``manage.py runrpc [addrport]``: serve the registered RPC functions on gevent.

Shaped like runserver: ``handle`` parses and validates (``CommandError``),
``run`` starts the autoreloader or not, ``inner_run`` checks and serves
(``django_zrpc.server.runner``); the command prints what the runner reports.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from datetime import datetime
from typing import Any

import django
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import autoreload
from gevent import monkey

import django_zrpc
from django_zrpc import conf
from django_zrpc.addrport import AddrPort, parse_addrport
from django_zrpc.management import require_rpcs_modules
from django_zrpc.server.run_logging import ensure_log_handler
from django_zrpc.server.runner import (
    LAUNCHER,
    Runner,
    heartbeat_warnings,
    main_target,
    raise_open_file_limit,
)
from django_zrpc.server.worker import WorkerHandles, end_with_supervisor


class Command(BaseCommand):
    help = "Serve the project's registered RPC functions over zerorpc, on gevent."

    # Checks run in inner_run, as runserver does, so the autoreloader's child
    # reports them after every restart.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        self._add_serving_arguments(parser)
        self._add_curve_arguments(parser)
        self._add_fleet_arguments(parser)
        self._add_development_arguments(parser)

    def _add_serving_arguments(self, parser: CommandParser) -> None:
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

    def _add_curve_arguments(self, parser: CommandParser) -> None:
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

    def _add_fleet_arguments(self, parser: CommandParser) -> None:
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

    def _add_development_arguments(self, parser: CommandParser) -> None:
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
        argv = [sys.executable, *flags, "-m", LAUNCHER, *main_target(), *sys.argv[1:]]
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
        ensure_log_handler()
        raise_open_file_limit()
        if options["worker"] is None:  # a worker's supervisor checked
            if not options["skip_checks"]:
                self.stdout.write("Performing system checks...\n\n")
                self.check(display_num_errors=True)
            self.check_migrations()
        Runner(self, options).run()

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

    def say_stopped(self, use_reloader: bool) -> None:
        self.stdout.write("Server stopped.\n")
        self.stdout.flush()
        if use_reloader:
            # Under the autoreloader the server runs beside the file watcher,
            # which never returns; leave the process ourselves.
            os._exit(0)

    def warn(self, options: dict[str, Any], concurrency: int, heartbeat: float) -> None:
        """Warn of database connections past the limit, a long heartbeat, and CURVE off."""
        from django_zrpc.server.build import connection_limits

        limits = connection_limits(concurrency, processes=options["workers"])
        for warning in [*limits, *heartbeat_warnings(heartbeat)]:
            self.stderr.write(f"Warning: {warning}")
        addrport: AddrPort = options["addrport"]
        if options["curve"] is None and not addrport.is_loopback:
            self.stderr.write(
                f"Warning: {addrport.host} is reachable from other machines and CURVE is off: "
                "anyone who reaches the port can call every function. See 'Securing a "
                "deployment' in django-zrpc's documentation (docs/topics/security.rst)."
            )

    def log(self, message: str) -> None:
        self.stderr.write(f"[{datetime.now().strftime('%Y-%m-%d %H:%M:%S')}] {message}")
        self.stderr.flush()

    def fail(self, message: str, use_reloader: bool) -> None:
        if not use_reloader:
            raise CommandError(message)
        # Like runserver: an exception here would only end the reloader's
        # server thread and leave the process hanging.
        self.stderr.write(f"Error: {message}")
        os._exit(1)

    def print_banner(
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


def _curve_line(curve: Any) -> str:
    if curve is None:
        return ""
    count = curve.allow.check()
    return f"CURVE on: admitting {count} client key(s) from {curve.allow.directory}\n"
