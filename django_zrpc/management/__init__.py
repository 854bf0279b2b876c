"""What django_zrpc's management commands share."""

from __future__ import annotations

from django.core.management.base import CommandError

from django_zrpc.autodiscovery import raise_if_broken
from django_zrpc.exceptions import BrokenRPCModule


def require_rpcs_modules() -> None:
    """Raise ``CommandError`` if an installed app's rpcs.py failed to import.

    The command then ends with the error in one sentence (file, line, what
    failed) and exit status 1, where the import error would print a traceback.
    """
    try:
        raise_if_broken()
    except BrokenRPCModule as err:
        raise CommandError(str(err)) from err
