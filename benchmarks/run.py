"""The benchmark runner: every client against every server, in one interleaved run.

    .venv/bin/python benchmarks/run.py --seconds 5 --rounds 3 --callers 1 16 64
    .venv/bin/python benchmarks/run.py --quick          # a seconds-long smoke pass

Every server and every client is a process of its own on 127.0.0.1, on free
ports, with the settings ``benchmarks.settings``. Each round measures every
pair once, in turn, then streams; the tables show medians over rounds, and
each figure as a ratio to a stock zerorpc client calling a stock zerorpc
server in the same run. CPU is user+system time per call of the client
process and of the server processes, from /proc.

It prints markdown tables; a full run (not ``--quick``) also rewrites the
generated block of docs/benchmarks.rst and docs/benchmarks.png. It makes what
it needs: the PostgreSQL database ``zrpc_bench`` (migrated, tickets loaded),
``benchmarks/.nameko-venv``, ``benchmarks/.grpc-venv``,
``benchmarks/.zero-venv`` and ``benchmarks/.chart-venv`` (``--quick`` makes
none of them, and uses the gRPC and zero ones when a full run made them); what
it cannot make or reach is skipped with the reason printed. The large
workload's pairs are measured last in each round, each against a server
started for it alone, so that the peak RSS of the server (and of the client,
a process of its own) is that of the large calls. Speed is measured here,
never asserted. This module starts, runs and measures; benchmarks/report.py
turns the measurements into the report and its tables.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import report, venvs
from benchmarks.common import (
    LARGE_BYTES_VARIABLE,
    LARGE_CALLERS,
    ROOT,
    SETTINGS,
    WORKLOADS,
    free_port,
    large_bytes,
    log,
    status_kb,
)
from benchmarks.database import prepare_database
from benchmarks.pairs import LARGE, PAIRS, STREAM_PAIRS, Pair
from benchmarks.servers import Server
from benchmarks.wrk import wrk

AMQP_URI = "amqp://guest:guest@127.0.0.1:5672/"
ASGI_SETTINGS = "benchmarks.settings_asgi"
BARE_URLCONF = "benchmarks.web_bare"
BARE_ASYNC_URLCONF = "benchmarks.web_bare_async"
# runrpc's workers (and so its database connections), and the zerorpc server's
# concurrent database calls: both bounded so that the run stays well under
# PostgreSQL's max_connections (100) while other work uses the database too.
RUNRPC_ARGS = ["--noreload", "--skip-checks", "--concurrency", "32", "--backlog", "1000"]
QUICK_LARGE_BYTES = 1024 * 1024  # the large workload's value under --quick


@dataclass
class Plan:
    """What a run measures and with what, and what it skips, with the reasons."""

    env: dict[str, str]
    pairs: list[Pair]
    workloads: list[str]
    skipped: list[str]
    database: str
    nameko_python: Path | None
    grpc_python: Path | None
    zero_python: Path | None
    http_client: str  # "wrk" or "python"


# -- servers ----------------------------------------------------------------------


def start_servers(wanted: set[str], plan: Plan, callers: int) -> dict[str, Server]:
    """Start the servers of the kinds wanted, and return them once all are ready.

    ``callers``: the most callers the run has at once, one thread each in the
    sync gRPC server's pool, so that no call waits for a thread.
    """
    servers: dict[str, Server] = {}
    python, env = sys.executable, plan.env
    try:
        for kind in ("raw", "zerorpc"):
            if kind in wanted:
                port = free_port()
                args = [python, "-m", "benchmarks.servers", kind, str(port)]
                servers[kind] = Server(kind, args, env, port, "ready")
        for kind, log_calls in (("runrpc", "1"), ("runrpc-quiet", "0")):
            if kind in wanted or (kind == "runrpc-quiet" and wanted & {"web", "web-asgi"}):
                servers[kind] = runrpc(kind, {**env, "ZRPC_LOG_CALLS": log_calls})
        if "runrpc-defaults" in wanted:
            # As deployed (issue 17): DEBUG off, no ZRPC_* server settings, and
            # the ops endpoint a deployment's health checks call, with which
            # the server's metrics are on by default (ZRPC_METRICS None).
            bare = {k: v for k, v in env.items() if k not in ("ZRPC_LOG_CALLS", "DJANGO_DEBUG")}
            ops = ["--ops", f"127.0.0.1:{free_port()}"]
            servers["runrpc-defaults"] = runrpc("runrpc-defaults", bare, ops)
        if "runrpc-metrics" in wanted:  # the ops endpoint and its metrics (issue 17)
            quiet = {**env, "ZRPC_LOG_CALLS": "0"}
            ops = ["--ops", f"127.0.0.1:{free_port()}"]
            servers["runrpc-metrics"] = runrpc("runrpc-metrics", quiet, ops)
        for workers in (1, 2):
            kind = f"runrpc-workers-{workers}"
            if kind in wanted:
                quiet = {**env, "ZRPC_LOG_CALLS": "0"}
                servers[kind] = runrpc(kind, quiet, ["--workers", str(workers)])
        if "nameko" in wanted and plan.nameko_python is not None:
            args = [
                str(plan.nameko_python.parent / "nameko"),
                "run",
                "--broker",
                AMQP_URI,
                "benchmarks.nameko_service",
            ]
            servers["nameko"] = Server("nameko", args, env, 5672, "Connected to", scheme="amqp")
        for kind, mode in (("grpc", "sync"), ("grpc-aio", "aio")):
            if kind in wanted and plan.grpc_python is not None:
                port = free_port()
                args = [str(plan.grpc_python), "benchmarks/grpc_service.py", mode, str(port)]
                args += ["--threads", str(callers)]
                servers[kind] = Server(kind, args, env, port, "ready", scheme="grpc")
        if "zero" in wanted and plan.zero_python is not None:
            port = free_port()
            args = [str(plan.zero_python), "benchmarks/zero_service.py", str(port)]
            # Ready once its worker process listens, not its broker alone.
            servers["zero"] = Server("zero", args, env, port, "Starting worker", scheme="zero")
        for server in servers.values():
            server.wait_ready()
        if "web" in wanted:
            servers["web"] = _web(servers["runrpc-quiet"], env)
        if "web-asgi" in wanted:
            servers["web-asgi"] = _web_asgi(servers["runrpc-quiet"], env)
        # The same views' answers made without an RPC: what the web server and
        # Django's handler cost alone (see benchmarks.web_bare).
        if "web-bare" in wanted:
            servers["web-bare"] = _web(None, {**env, "ZRPC_BENCH_URLCONF": BARE_URLCONF})
        if "web-asgi-bare" in wanted:
            bare = {**env, "ZRPC_BENCH_URLCONF": BARE_ASYNC_URLCONF}
            servers["web-asgi-bare"] = _web_asgi(None, bare)
    except BaseException:
        for server in servers.values():
            server.stop()
        raise
    return servers


def runrpc(name: str, env: dict[str, str], extra: list[str] | None = None) -> Server:
    port = free_port()
    args = [sys.executable, "manage.py", "runrpc", *RUNRPC_ARGS, *(extra or []), str(port)]
    return Server(name, args, env, port, "Serving ")


def _web(behind: Server | None, env: dict[str, str]) -> Server:
    """gunicorn, one gevent worker, serving views that call ``behind`` through RPCClient.

    ``behind`` None: views that make the answer themselves (``ZRPC_BENCH_URLCONF``).
    """
    port = free_port()
    args = [
        str(Path(sys.executable).parent / "gunicorn"),
        "-k",
        "gevent",
        "-w",
        "1",
        "--keep-alive",
        "30",
        "--bind",
        f"127.0.0.1:{port}",
        "testproject.wsgi",
    ]
    web_env = {**env, "ZRPC_ENDPOINT": behind.endpoint} if behind is not None else env
    server = Server("gunicorn", args, web_env, port, None, scheme="http")
    return server.wait_ready(f"{server.endpoint}/bench/echo/")


def _web_asgi(behind: Server | None, env: dict[str, str]) -> Server:
    """uvicorn, one process, serving async views that call ``behind`` through AsyncRPCClient.

    ``behind`` None: views that make the answer themselves (``ZRPC_BENCH_URLCONF``).
    """
    port = free_port()
    args = [sys.executable, "-m", "uvicorn", "testproject.asgi:application", "--port", str(port)]
    args += ["--lifespan", "off", "--no-access-log", "--log-level", "warning"]
    # As gunicorn's --keep-alive 30 above: a caller's connection outlives the
    # pause between two workloads (uvicorn's default closes it after 5 s).
    args += ["--timeout-keep-alive", "30"]
    web_env = {**env, "DJANGO_SETTINGS_MODULE": ASGI_SETTINGS}
    if behind is not None:
        web_env["ZRPC_ENDPOINT"] = behind.endpoint
    server = Server("uvicorn", args, web_env, port, None, scheme="http")
    return server.wait_ready(f"{server.endpoint}/bench/echo/")


def server_pids(pair: Pair, servers: dict[str, Server]) -> list[int]:
    pids = servers[pair.server].pids
    if pair.server in ("web", "web-asgi"):  # the web side and the RPC server behind it
        pids += servers["runrpc-quiet"].pids
    return pids


# -- clients ----------------------------------------------------------------------


def measure(
    pair: Pair,
    workloads: list[str],
    callers: list[int],
    seconds: float,
    servers: dict[str, Server],
    plan: Plan,
) -> list[dict]:
    """Run one pair's client over ``workloads`` x ``callers``; return its measurements."""
    server = servers[pair.server]
    pids = server_pids(pair, servers)
    if pair.client == "http" and plan.http_client == "wrk":
        return [wrk(server.endpoint, w, n, seconds, pids) for w in workloads for n in callers]
    common = [
        "--pids",
        ",".join(map(str, pids)),
        "--workloads",
        ",".join(workloads),
        "--callers",
        ",".join(map(str, callers)),
        "--seconds",
        str(seconds),
    ]
    if pair.client.startswith("nameko-"):
        assert plan.nameko_python is not None
        mode = pair.client.removeprefix("nameko-")
        args = [str(plan.nameko_python), "benchmarks/nameko_client.py", mode, AMQP_URI, *common]
    elif pair.client.startswith("grpc-"):
        assert plan.grpc_python is not None
        mode, target = pair.client.removeprefix("grpc-"), server.endpoint.removeprefix("grpc://")
        args = [str(plan.grpc_python), "benchmarks/grpc_client.py", mode, target, *common]
    elif pair.client.startswith("zero-"):
        assert plan.zero_python is not None
        mode, target = pair.client.removeprefix("zero-"), server.endpoint.removeprefix("zero://")
        args = [str(plan.zero_python), "benchmarks/zero_client.py", mode, target, *common]
    else:
        args = [sys.executable, "-m", "benchmarks.clients", pair.client, server.endpoint, *common]
    budget = seconds * len(workloads) * len(callers) * 2 + 120
    out = subprocess.run(
        args, cwd=ROOT, env=plan.env, capture_output=True, text=True, timeout=budget, check=False
    )
    if out.returncode != 0:
        raise RuntimeError(f"{pair.label}: client failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def stream_once(label: str, client: str, server_kind: str, rows: int, env: dict[str, str]) -> dict:
    """A fresh server streams ``rows`` tickets once; its peak RSS is then read."""
    if server_kind == "zerorpc":
        port = free_port()
        args = [sys.executable, "-m", "benchmarks.servers", "zerorpc", str(port)]
        server = Server("zerorpc", args, env, port, "ready")
    else:
        server = runrpc(server_kind, {**env, "ZRPC_LOG_CALLS": "0"})
    try:
        server.wait_ready()
        rss_before = status_kb(server.proc.pid, "VmRSS")
        args = [
            sys.executable,
            "-m",
            "benchmarks.clients",
            client,
            server.endpoint,
            "--pids",
            str(server.proc.pid),
            "--rows",
            str(rows),
        ]
        out = subprocess.run(
            args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900, check=False
        )
        if out.returncode != 0:
            raise RuntimeError(f"{label} streaming {rows}: client failed:\n{out.stderr[-2000:]}")
        result = json.loads(out.stdout.strip().splitlines()[-1])
        result["rss_before_kb"] = rss_before
        result["peak_rss_kb"] = status_kb(server.proc.pid, "VmHWM")
        return result
    finally:
        server.stop()


# -- the run ------------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict:
    """Measure every pair of the plan for ``args.rounds`` rounds; return the report."""
    plan = make_plan(args)
    results, streams = measure_rounds(args, plan)
    return report.summarize(
        seconds=args.seconds,
        rounds=args.rounds,
        callers=args.callers,
        rows=args.rows,
        pairs=[p.label for p in plan.pairs],
        workloads=plan.workloads,
        results=results,
        streams=streams,
        skipped=plan.skipped,
        database=plan.database,
        http_client=plan.http_client,
        large_bytes=int(plan.env.get(LARGE_BYTES_VARIABLE, large_bytes())),
        command=" ".join(["benchmarks/run.py", *sys.argv[1:]]),
    )


def make_plan(args: argparse.Namespace) -> Plan:
    """Prepare the database, nameko and gRPC, pick the HTTP load, drop what cannot run."""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": SETTINGS, "CONN_MAX_AGE": "60"}
    if args.quick:
        env.setdefault(LARGE_BYTES_VARIABLE, str(QUICK_LARGE_BYTES))
    skipped: list[str] = []
    workloads = [w for w in WORKLOADS if w in args.workloads]
    pairs = [p for p in PAIRS if not args.pairs or any(s in p.label for s in args.pairs)]

    database_url, database, pg_reason = prepare_database(max(args.rows, default=0), env)
    env["DATABASE_URL"] = database_url
    if pg_reason and "get_ticket" in workloads:
        workloads.remove("get_ticket")
        skipped.append(f"get_ticket rows: {pg_reason}")
    if pg_reason and args.rows:
        skipped.append(f"streaming runs on SQLite, not PostgreSQL: {pg_reason}")

    nameko_python = None
    if any(p.server == "nameko" for p in pairs):
        reason = "--no-nameko or --quick" if args.no_nameko else ""
        if not reason and not _reachable("127.0.0.1", 5672):
            reason = "RabbitMQ does not answer at 127.0.0.1:5672"
        if not reason:
            nameko_python, reason = venvs.ensure("nameko")
        if reason:
            skipped.append(f"nameko rows: {reason}")
            pairs = [p for p in pairs if p.server != "nameko"]

    grpc_python, pairs = _peer_rows("grpc", "gRPC", args.no_grpc, args.quick, pairs, skipped)
    zero_python, pairs = _peer_rows("zero", "zero", args.no_zero, args.quick, pairs, skipped)

    http_client = args.http_client
    if http_client == "auto":
        http_client = "wrk" if shutil.which("wrk") else "python"
    elif http_client == "wrk" and not shutil.which("wrk"):
        raise SystemExit("--http-client wrk: wrk is not installed")

    pairs = [p for p in pairs if set(p.workloads) & set(workloads)]
    return Plan(
        env,
        pairs,
        workloads,
        skipped,
        database,
        nameko_python,
        grpc_python,
        zero_python,
        http_client,
    )


def _peer_rows(
    name: str, label: str, refused: bool, quick: bool, pairs: list[Pair], skipped: list[str]
) -> tuple[Path | None, list[Pair]]:
    """The python of the pairs whose client is ``NAME-...``, and the pairs left.

    Without the peer's virtualenv its pairs are dropped, and ``skipped`` says why.
    """
    if not any(p.client.startswith(f"{name}-") for p in pairs):
        return None, pairs
    python, reason = _peer_venv(name, refused, quick)
    if reason:
        skipped.append(f"{label} rows: {reason}")
        pairs = [p for p in pairs if not p.client.startswith(f"{name}-")]
    return python, pairs


def _peer_venv(name: str, refused: bool, quick: bool) -> tuple[Path | None, str]:
    """benchmarks/.NAME-venv's python, made unless --quick; or why there is none."""
    if refused:
        return None, f"--no-{name}"
    if not quick:
        return venvs.ensure(name)
    python = venvs.made(name)
    if python is None:
        return None, f"--quick makes no virtualenv, and a full run has not made .{name}-venv yet"
    return python, ""


def measure_rounds(
    args: argparse.Namespace, plan: Plan
) -> tuple[dict[tuple[str, str, int], list[dict]], dict[tuple[str, int], list[dict]]]:
    """Return the measurements by (pair, workload, callers) and the streams by (pair, rows).

    Rounds interleave the pairs, so that a slow minute of a shared machine
    lands on every pair rather than on one.
    """
    results: dict[tuple[str, str, int], list[dict]] = {}
    streams: dict[tuple[str, int], list[dict]] = {}
    log(f"Starting servers (database: {plan.database}) ...")
    servers = start_servers({p.server for p in plan.pairs}, plan, max(args.callers))
    try:
        for round_number in range(1, args.rounds + 1):
            for pair in plan.pairs:
                todo = [w for w in plan.workloads if w in pair.workloads and w != LARGE]
                if not todo:
                    continue
                log(f"round {round_number}/{args.rounds}: {pair.label} ({', '.join(todo)})")
                for result in measure(pair, todo, args.callers, args.seconds, servers, plan):
                    key = (pair.label, result["workload"], result["callers"])
                    results.setdefault(key, []).append(result)
            for pair in plan.pairs:
                if LARGE in pair.workloads and LARGE in plan.workloads:
                    log(f"round {round_number}/{args.rounds}: {pair.label} (large, own server)")
                    for result in large_once(pair, args.seconds, plan):
                        key = (pair.label, LARGE, result["callers"])
                        results.setdefault(key, []).append(result)
            for rows in args.rows:
                for label, client, server_kind in STREAM_PAIRS:
                    log(f"round {round_number}/{args.rounds}: {label} streams {rows:,} rows")
                    result = stream_once(label, client, server_kind, rows, plan.env)
                    streams.setdefault((label, rows), []).append(result)
    finally:
        for server in servers.values():
            server.stop()
    return results, streams


def large_once(pair: Pair, seconds: float, plan: Plan) -> list[dict]:
    """Measure ``pair`` on the large workload against a server started for it alone.

    The client is a process of its own too: both peaks (``VmHWM``) are then
    the large calls', which the client reads as growth over each process's
    RSS just before its first large call (benchmarks.common.memory_growth).
    """
    servers = start_servers({pair.server}, plan, max(LARGE_CALLERS))
    try:
        return measure(pair, [LARGE], LARGE_CALLERS, seconds, servers, plan)
    finally:
        for server in servers.values():
            server.stop()


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=3):
            return True
    except OSError:
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, help="per measurement (default 5; quick 0.1)")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 3; quick 1)")
    parser.add_argument(
        "--callers", type=int, nargs="+", help="concurrent callers; 1 is sequential (1 16 64)"
    )
    parser.add_argument(
        "--rows", type=int, nargs="*", help="ticket_list sizes streamed (10000 100000)"
    )
    parser.add_argument("--workloads", nargs="+", choices=list(WORKLOADS), default=list(WORKLOADS))
    parser.add_argument("--pairs", nargs="+", help="only pairs whose label contains one of these")
    parser.add_argument("--no-nameko", action="store_true", help="skip the nameko rows")
    parser.add_argument("--no-grpc", action="store_true", help="skip the gRPC rows")
    parser.add_argument("--no-zero", action="store_true", help="skip the zero (zeroapi) rows")
    parser.add_argument(
        "--http-client",
        choices=["auto", "python", "wrk"],
        default="auto",
        help="load generator of the HTTP row (auto: wrk when installed)",
    )
    parser.add_argument(
        "--docs",
        action=argparse.BooleanOptionalAction,
        help="rewrite docs/benchmarks.rst's results and docs/benchmarks.png (default: not --quick)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a seconds-long smoke pass: 0.1 s, 1 round, callers 1 4, rows 500 1000, a 1 MiB "
        "large value, no nameko, gRPC and zero only if their virtualenvs are made",
    )
    args = parser.parse_args()
    quick = args.quick
    defaults = {
        "seconds": 0.1 if quick else 5.0,
        "rounds": 1 if quick else 3,
        "callers": [1, 4] if quick else [1, 16, 64],
        "rows": [500, 1000] if quick else [10_000, 100_000],
        "docs": not quick,
    }
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    args.no_nameko = args.no_nameko or quick
    started = time.monotonic()
    measured = run(args)
    print(report.markdown(measured))
    report.write_last_run(measured)
    if args.docs:
        for note in report.write_docs(measured):
            print(note)
    log(f"done in {time.monotonic() - started:.0f}s")


if __name__ == "__main__":
    main()
