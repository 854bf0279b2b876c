"""``manage.py rpclist``: the RPC functions this project registers, as runrpc would serve them."""

from __future__ import annotations

import inspect
import json
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from django_zrpc.management import require_rpcs_modules
from django_zrpc.registry import RPCFunction, rpc


def describe(entry: RPCFunction) -> dict[str, Any]:
    """Return what rpclist shows of one registered function."""
    return {
        "name": entry.name,
        "function": entry.qualname,
        "signature": signature(entry),
        "stream": entry.stream,
        "blocking": entry.blocking,
        "deprecated": entry.deprecated,
        "requires": entry.requirement,
        "doc": inspect.getdoc(entry.func) or "",
    }


def signature(entry: RPCFunction) -> str:
    try:
        return str(inspect.signature(inspect.unwrap(entry.func)))
    except (TypeError, ValueError):
        return "(...)"


class Command(BaseCommand):
    help = "List the registered RPC functions: name, signature, flags, module and docstring."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--json", action="store_true", help="Print a JSON array, one object per function."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        require_rpcs_modules()
        entries = [describe(entry) for entry in sorted(rpc, key=lambda e: e.name)]
        if options["json"]:
            self.stdout.write(json.dumps(entries, indent=2))
            return
        if not entries:
            self.stdout.write(
                "No RPC functions are registered: add @rpc.register() functions to an "
                "installed app's rpcs.py."
            )
            return
        for entry in entries:
            flags = [flag for flag in ("stream", "blocking") if entry[flag]]
            if entry["requires"]:
                flags.append(f"requires {entry['requires']}")
            header = f"{entry['name']}{entry['signature']}"
            if flags:
                header += f"  [{', '.join(flags)}]"
            if entry["deprecated"]:
                header += f"  [deprecated: {entry['deprecated']}]"
            self.stdout.write(self.style.SUCCESS(header))
            self.stdout.write(f"    {entry['function']}")
            summary = entry["doc"].strip().splitlines()
            if summary:
                self.stdout.write(f"    {summary[0]}")
        self.stdout.write(f"\n{len(entries)} RPC function(s).")
