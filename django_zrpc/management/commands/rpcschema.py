"""``manage.py rpcschema``: the OpenRPC document of the RPC functions, checked or turned into stubs.

Without options it prints this project's document; ``--from`` asks a running
server for its own (``_zrpc_schema``). ``--check OLD.json`` compares the
document against one saved from the release callers still run, and exits 1
on a change that would break them; ``--stubs OUT.py`` writes a typed client.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from django_zrpc import __version__, conf
from django_zrpc.contracts.compat import compare
from django_zrpc.contracts.schema import function_spec, openrpc_document
from django_zrpc.exceptions import ZRPCConfigurationError
from django_zrpc.management import require_rpcs_modules
from django_zrpc.registry import rpc

#: Seconds ``--from`` waits for the server's answer by default.
DEFAULT_TIMEOUT = 10.0
_STUBS_MODULE = "django_zrpc.contracts.stubs"


def project_document() -> dict[str, Any]:
    """Return the OpenRPC document of this project's registered functions, as runrpc serves them."""
    require_rpcs_modules()
    try:
        specs = [
            entry.spec
            or function_spec(
                entry.func,
                entry.name,
                stream=entry.stream,
                blocking=entry.blocking,
                deprecated=entry.deprecated,
                requires=entry.requirement,
            )
            for entry in rpc
        ]
    except ZRPCConfigurationError as err:  # UnsupportedAnnotation: hints that cannot resolve
        raise CommandError(str(err)) from err
    return openrpc_document(specs, title=conf.get("SERVER_NAME"), version=__version__)


class Command(BaseCommand):
    help = (
        "Print the OpenRPC document of the RPC functions (this project's, or a running "
        "server's with --from); --check OLD.json exits 1 on changes that break old callers; "
        "--stubs OUT.py writes a typed client module."
    )
    # --from needs nothing of this project; the local document checks its rpcs.py itself.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--from",
            dest="endpoint",
            metavar="ENDPOINT",
            help="Ask the server at ENDPOINT (tcp://host:4242) for its document instead.",
        )
        parser.add_argument(
            "--timeout",
            type=float,
            default=DEFAULT_TIMEOUT,
            help=f"Seconds --from waits for the server (default: {DEFAULT_TIMEOUT:g}).",
        )
        parser.add_argument("--curve-secret", metavar="FILE", help="This client's key_secret.")
        parser.add_argument("--curve-server", metavar="FILE", help="The server's public key.")
        parser.add_argument(
            "--check",
            metavar="OLD.json",
            help="Compare with a saved document: one line per change, exit 1 if any breaks "
            "callers of OLD.json.",
        )
        parser.add_argument(
            "--stubs", metavar="OUT.py", help="Write a typed client module for the document."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if not options["timeout"] > 0:
            raise CommandError(f"--timeout must be greater than 0, not {options['timeout']!r}.")
        old = load_document(options["check"]) if options["check"] else None
        if options["endpoint"]:
            document = self.fetch(options["endpoint"], options)
        else:
            document = project_document()
        if options["stubs"]:
            self.write_stubs(Path(options["stubs"]), document)
        if old is not None:
            self.check_against(old, document, options["check"])
        elif not options["stubs"]:
            self.stdout.write(json.dumps(document, indent=2))

    def check_against(self, old: dict[str, Any], new: dict[str, Any], path: str) -> None:
        """Print each change from ``old`` to ``new``; raise (exit 1) if one breaks old callers."""
        changes = compare(old, new)
        for change in changes:
            style = self.style.ERROR if change.breaking else self.style.SUCCESS
            self.stdout.write(style(str(change)))
        breaking = sum(change.breaking for change in changes)
        if breaking:
            raise CommandError(
                f"{breaking} breaking change(s) since {path}: callers still on it would fail.",
                returncode=1,
            )
        self.stdout.write(f"No breaking change since {path} ({len(changes)} additive change(s)).")

    def fetch(self, endpoint: str, options: dict[str, Any]) -> dict[str, Any]:
        """Return the document the server at ``endpoint`` serves as ``_zrpc_schema``."""
        # Imported here: printing or checking this project's document needs no sockets.
        from django_zrpc.client.gevent.connection import Client
        from django_zrpc.client.options import validate_endpoints
        from django_zrpc.curve import client_keys
        from django_zrpc.exceptions import CurveKeyError, RemoteError

        try:
            validate_endpoints(endpoint)
            keys = client_keys(options["curve_secret"], options["curve_server"])
        except (ValueError, CurveKeyError) as err:
            raise CommandError(str(err)) from err
        client = Client(endpoint, timeout=options["timeout"], curve=keys)
        try:
            document = client.call("_zrpc_schema")
        except RemoteError as err:
            hint = ""
            if err.name == "NameError":
                hint = " Its django_zrpc predates _zrpc_schema: upgrade it, or run rpcschema there."
            raise CommandError(
                f"{endpoint} answered _zrpc_schema with {err.name}: {err.msg}.{hint}"
            ) from err
        except Exception as err:  # ServerUnavailable, TimeoutExpired, LostRemote...
            raise CommandError(" ".join(f"{endpoint} sent no schema: {err}".split())) from err
        finally:
            client.close()
        if not isinstance(document, dict):
            raise CommandError(f"{endpoint} answered _zrpc_schema with {document!r:.200}.")
        return document

    def write_stubs(self, path: Path, document: dict[str, Any]) -> None:
        try:
            stubs = importlib.import_module(_STUBS_MODULE)
        except ImportError as err:
            if err.name != _STUBS_MODULE:
                raise
            raise CommandError(
                f"--stubs needs {_STUBS_MODULE}, which this django_zrpc ({__version__}) "
                "does not have yet; print the document and write the client by hand meanwhile."
            ) from err
        try:
            path.write_text(stubs.render_stubs(document))
        except OSError as err:
            raise CommandError(f"--stubs {str(path)!r} cannot be written: {err}.") from err
        self.stderr.write(f"Wrote a typed client to {path}.")


def load_document(path: str) -> dict[str, Any]:
    """Return the OpenRPC document saved at ``path``, or raise ``CommandError`` saying why not."""
    try:
        text = Path(path).read_text()
    except OSError as err:
        raise CommandError(f"--check {path!r} cannot be read: {err.strerror or err}.") from err
    try:
        document = json.loads(text)
    except ValueError as err:
        raise CommandError(f"--check {path!r} is not JSON: {err}.") from err
    if not isinstance(document, dict) or not isinstance(document.get("methods"), list):
        raise CommandError(
            f"--check {path!r} is not an OpenRPC document (no 'methods' list): save one "
            "with `manage.py rpcschema > OLD.json` from the release to compare with."
        )
    return document
