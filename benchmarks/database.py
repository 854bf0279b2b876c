"""The benchmark's database: PostgreSQL ``zrpc_bench`` with its tickets, or a SQLite file.

Made and filled on first need, next to the database ``DATABASE_URL`` names;
when PostgreSQL cannot be reached the reason is returned, never raised, and
the streams read a SQLite file instead.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from benchmarks.common import ROOT, TICKET_IDS, log

DEFAULT_PG = "postgres://postgres@127.0.0.1:5432/test"
BENCH_DB = "zrpc_bench"


def prepare_database(rows: int, env: dict[str, str]) -> tuple[str, str, str]:
    """Return (DATABASE_URL for the servers, its label, why PostgreSQL rows are skipped)."""
    tickets = max(rows, TICKET_IDS)
    url = os.environ.get("DATABASE_URL") or DEFAULT_PG
    reason = ""
    if urlsplit(url).scheme not in ("postgres", "postgresql"):
        reason = f"DATABASE_URL is not PostgreSQL ({urlsplit(url).scheme}://)"
    else:
        try:
            bench_url = _prepare_postgres(url, tickets, env)
            return bench_url, f"PostgreSQL database {BENCH_DB}", ""
        except Exception as err:
            reason = f"PostgreSQL unreachable or unusable ({type(err).__name__}: {err})"
    log(f"get_ticket rows skipped: {reason}; streaming on SQLite")
    path = ROOT / "benchmarks" / ".bench.sqlite3"
    sqlite_url = f"sqlite:///{path}"
    if not _enough(_ticket_range(sqlite_url), tickets):
        path.unlink(missing_ok=True)
        _manage(["migrate", "--noinput", "--verbosity", "0"], sqlite_url, env)
        _manage(["load_demo_tickets", "--count", str(tickets)], sqlite_url, env)
    return sqlite_url, "SQLite (benchmarks/.bench.sqlite3)", reason


def _prepare_postgres(url: str, tickets: int, env: dict[str, str]) -> str:
    import psycopg

    parts = urlsplit(url)
    with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [BENCH_DB]).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{BENCH_DB}"')
    bench_url = urlunsplit(parts._replace(path=f"/{BENCH_DB}"))
    _manage(["migrate", "--noinput", "--verbosity", "0"], bench_url, env)
    if not _enough(_ticket_range(bench_url), tickets):
        log(f"Loading {tickets:,} tickets into {BENCH_DB} ...")
        with psycopg.connect(bench_url, autocommit=True) as conn:
            conn.execute("TRUNCATE tickets_ticket RESTART IDENTITY")
        _manage(["load_demo_tickets", "--count", str(tickets)], bench_url, env)
    return bench_url


def _enough(found: tuple[int, int, int] | None, tickets: int) -> bool:
    """Whether the tickets are ids 1 to N, N at least ``tickets``.

    More than a run needs is kept: a short run (the suite's ``--quick``
    pass) that cut the table to its own size would leave a longer run
    beside it streaming rows that are gone.
    """
    if found is None:
        return False
    low, high, count = found
    return low == 1 and high == count and count >= tickets


def _ticket_range(url: str) -> tuple[int, int, int] | None:
    """(min id, max id, count) of tickets, when at least as many as needed exist."""
    query = "SELECT MIN(id), MAX(id), COUNT(*) FROM tickets_ticket"
    try:
        if url.startswith("sqlite"):
            import sqlite3

            path = urlsplit(url).path[1:]
            if not Path(path).exists():
                return None
            with sqlite3.connect(path) as conn:
                row = conn.execute(query).fetchone()
        else:
            import psycopg

            with psycopg.connect(url, connect_timeout=5) as conn:
                row = conn.execute(query).fetchone()
    except Exception:
        return None
    return tuple(row) if row and row[0] is not None else None  # type: ignore[return-value]


def _manage(args: list[str], database_url: str, env: dict[str, str]) -> None:
    subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**env, "DATABASE_URL": database_url},
        check=True,
        capture_output=True,
        text=True,
        timeout=600,
    )
