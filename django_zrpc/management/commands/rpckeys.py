"""``manage.py rpckeys DIR NAME``: write a CURVE keypair for a server or a client."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from django_zrpc.curve import CurveKeyError, write_keypair

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


class Command(BaseCommand):
    help = (
        "Write a CURVE keypair in pyzmq's certificate format: DIR/NAME.key (public) and "
        "DIR/NAME.key_secret (secret, mode 0600)."
    )
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("directory", metavar="DIR", help="Folder to write the files in.")
        parser.add_argument(
            "name",
            metavar="NAME",
            help="The key's name, e.g. the service it identifies. A server's allow-list "
            "knows a client by it.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        name = options["name"]
        if not _NAME_RE.match(name):
            raise CommandError(
                f"{name!r} is not a key name: use letters, digits, '_', '-' and '.', "
                "starting with a letter or digit."
            )
        directory = Path(options["directory"])
        try:
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            public, secret = write_keypair(directory, name)
        except (CurveKeyError, OSError) as err:
            raise CommandError(str(err)) from err
        self.stdout.write(
            f"Wrote {public} (public: give it to the other side) and "
            f"{secret} (secret, mode 0600: it stays here)."
        )
