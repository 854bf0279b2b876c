"""RPC functions the tests use to look inside a running server."""

import dataclasses
import os
import time

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection
from django.utils.translation import gettext

from django_zrpc import RPCClient, current_call, rpc
from testproject.tickets.errors import SoldOut
from testproject.tickets.models import Ticket


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
    return Ticket.objects.count()


@rpc.register()
def write_then_sleep(title, seconds):
    """Create a ticket inside a transaction, then sleep before committing."""
    from decimal import Decimal

    from django.db import transaction

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


@rpc.register()
def describe_args(a, b=2, *rest, c=3, **more):
    """Return how the arguments arrived."""
    return {"a": a, "b": b, "rest": rest, "c": c, "more": more}


@rpc.register()
def type_of(value):
    """Return the type name of value, as the function received it, and value."""
    return [type(value).__name__, value]


@rpc.register()
def unsendable():
    """Return a value no RPC can carry."""
    return complex(1, 2)


@rpc.register()
def raise_django_error(kind):
    """Raise one of Django's exceptions, as a function of a real project would."""
    if kind == "does_not_exist":
        Ticket.objects.get(pk=-1)
    if kind == "multiple":
        raise Ticket.MultipleObjectsReturned(
            "get() returned more than one Ticket -- it returned 2!"
        )
    if kind == "permission":
        raise PermissionDenied("Only the back office may do that.")
    if kind == "validation_fields":
        raise ValidationError(
            {
                "title": [
                    ValidationError(
                        "Ensure this value has at least %(n)s characters.",
                        code="min_length",
                        params={"n": 3},
                    )
                ],
                "price": ["Enter a number."],
            }
        )
    if kind == "validation_list":
        raise ValidationError([ValidationError("First.", code="one"), "Second."])
    if kind == "sold_out":
        raise SoldOut(7, 9)
    raise KeyError(kind)


@rpc.register()
def nested_call_context(endpoint):
    """Call call_context on endpoint from inside this call: what a nested call carries."""
    return RPCClient(endpoint, timeout=10).call_context()


@rpc.register()
def translated_yes():
    """Return "Yes" in the caller's language."""
    return gettext("Yes")


# -- deadlines and traces (issue 17) ---------------------------------------------


@rpc.register()
def insert_ticket(title):
    """Insert a ticket named title (the row a call that never ran must not leave)."""
    from decimal import Decimal

    Ticket.objects.create(title=title, price=Decimal("1.00"))
    return title


@rpc.register()
def time_left():
    """Return the seconds this call's caller will still wait (current_call().time_left())."""
    return current_call().time_left()


@rpc.register()
def nested_time_left(endpoint, timeout):
    """Call time_left on endpoint from inside this call, with timeout: what the nested call got."""
    return RPCClient(endpoint, timeout=timeout).time_left()


@rpc.register()
def finished_spans():
    """Return the spans this server finished (tests.otel's exporter), oldest first."""
    from tests import otel

    return otel.finished_spans()


@rpc.register()
def nested_echo(endpoint, value):
    """Call echo on endpoint from inside this call and return what it returned."""
    return RPCClient(endpoint, timeout=10).echo(value)


@rpc.register(blocking=True)
def nested_echo_blocking(endpoint, value):
    """``nested_echo`` from a blocking function's thread (gevent's thread pool)."""
    with RPCClient(endpoint, timeout=30) as client:
        return client.echo(value)


def _query_in_a_span():
    # What a database instrumentation does: a span around the query, the
    # current span its parent.
    from opentelemetry import trace

    with trace.get_tracer("tests.probes").start_as_current_span("query"):
        return Ticket.objects.count() >= 0


@rpc.register()
def query_in_a_span():
    """Run a query inside a span of its own, as an instrumented database driver would."""
    return _query_in_a_span()


@rpc.register(blocking=True)
def query_in_a_span_blocking():
    """The same, from a blocking function's thread."""
    return _query_in_a_span()
