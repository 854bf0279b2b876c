"""RPC functions the tests use to look inside a running server."""

import dataclasses
import os
import time

from django.db import connection

from django_zrpc import current_call, rpc


@rpc.register()
def echo(value):
    """Return value unchanged."""
    return value


@rpc.register()
def sleep(seconds):
    """Sleep (cooperatively under runrpc) and return the seconds slept."""
    time.sleep(seconds)
    return seconds


@rpc.register()
def db_sleep(seconds):
    """Run SELECT pg_sleep(seconds) on the database and return seconds."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_sleep(%s)", [seconds])
    return seconds


@rpc.register()
def db_backend_pid():
    """Return the PostgreSQL backend pid serving this call's connection."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


@rpc.register()
def server_pid():
    """Return the server's process id."""
    return os.getpid()


@rpc.register(name="count_up", stream=True)
def count_up(n, delay=0.0):
    """Stream 0..n-1, sleeping delay seconds before each item."""
    for i in range(n):
        if delay:
            time.sleep(delay)
        yield i


def _burn(seconds):
    deadline = time.monotonic() + seconds
    count = 0
    while time.monotonic() < deadline:
        count += sum(range(1000))
    return count > 0


@rpc.register(blocking=True)
def burn_cpu(seconds):
    """Burn CPU in an OS thread of the pool for seconds; the event loop goes on."""
    return _burn(seconds)


@rpc.register()
def burn_cpu_inline(seconds):
    """Burn CPU on the event loop for seconds: everything else waits (a stall)."""
    return _burn(seconds)


@rpc.register(blocking=True)
def count_tickets_blocking():
    """Count tickets with the ORM from an OS thread of the pool."""
    from testproject.tickets.models import Ticket

    return Ticket.objects.count()


@rpc.register()
def write_then_sleep(title, seconds):
    """Create a ticket inside a transaction, then sleep before committing."""
    from decimal import Decimal

    from django.db import transaction

    from testproject.tickets.models import Ticket

    with transaction.atomic():
        Ticket.objects.create(title=title, price=Decimal("1.00"))
        time.sleep(seconds)
    return title


def _context():
    call = current_call()
    return dataclasses.asdict(call) if call is not None else None


@rpc.register()
def call_context():
    """Return the call's context (current_call()) as a dict."""
    return _context()


@rpc.register(blocking=True)
def call_context_blocking():
    """The same, from a blocking function's thread."""
    return _context()


@rpc.register(name="call_context_stream", stream=True)
def call_context_stream(n=2):
    """Yield the call's context n times, switching greenlets between items."""
    for _ in range(n):
        time.sleep(0)
        yield _context()
