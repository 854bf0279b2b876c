"""RPC functions the tests use to look inside a running server."""

import os
import time

from django.db import connection

from django_zrpc import rpc


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
