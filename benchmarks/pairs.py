"""What the benchmark measures: the client -> server pairs, and the few it compares against.

Shared by the runner (which starts and measures them) and the report (which
divides every figure by the baseline's and reads the targets from the rows).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Pair:
    label: str
    # a kind of benchmarks.clients, "nameko-reused"/"nameko-per-call", "grpc-sync"/"grpc-aio"
    # (benchmarks/grpc_client.py), "zero-sync"/"zero-async" (benchmarks/zero_client.py)
    # or "http"
    client: str
    server: str  # a key of the servers started
    workloads: tuple[str, ...]


RAW = "raw pyzmq -> raw pyzmq"
BASELINE = "zerorpc -> zerorpc"
TARGET_PAIR = "RPCClient -> runrpc, no call log"
NAMEKO_REUSED = "nameko proxy reused -> nameko"
# gRPC (issue 16), the pair a Django team would pick instead: its sync client
# (threads, one channel) and its grpc.aio client (tasks, one channel) against
# the thread-pool server a Django project would run; and grpc.aio on both
# sides, gRPC's fastest Python pair.
GRPC_SYNC = "gRPC sync -> gRPC server"
GRPC_AIO = "gRPC aio -> gRPC server"
GRPC_AIO_SERVER = "gRPC aio -> gRPC aio server"
GRPC_PAIRS = [GRPC_SYNC, GRPC_AIO, GRPC_AIO_SERVER]
# zero (PyPI zeroapi: ZeroMQ and msgspec), the nearest peer: a ZeroMQ RPC
# framework with typed functions. Its sync client called from threads, and
# its asyncio client from tasks, against its server with one worker.
ZERO_SYNC = "zero sync (threads) -> zero server"
ZERO_ASYNC = "zero async -> zero server"
ZERO_PAIRS = [ZERO_SYNC, ZERO_ASYNC]
# The django_zrpc pairs whose target lines give their echo calls/s as ratios
# to raw pyzmq, to zerorpc -> zerorpc and to every gRPC pair of the run
# (issues 16, 17), AsyncRPCClient's among them (issue 16: >= 0.4x raw pyzmq at 64).
ASYNC_PAIR = "AsyncRPCClient -> runrpc, no call log"
# Issue 17: runrpc as deployed with the defaults (DEBUG off, no ZRPC_* server
# settings, the ops endpoint served): the call log follows DEBUG, so it is
# off, and the metrics are on, as they are by default wherever they can be read.
DEFAULTS_PAIR = "RPCClient -> runrpc, production defaults"
ASYNC_DEFAULTS_PAIR = "AsyncRPCClient -> runrpc, production defaults"
ZRPC_PAIRS = [TARGET_PAIR, DEFAULTS_PAIR, ASYNC_PAIR, ASYNC_DEFAULTS_PAIR]
# The large workload's pairs are measured each with a server of its own, so
# that the server's peak RSS is the large calls' (benchmarks/run.py).
LARGE = "large"
# runrpc --workers (issue 14): the 2 ms CPU function on 1 and 2 processes, and
# echo on --workers 1 against the single process of before. Each label says
# "workers", so that `run.py --pairs workers` runs these alone.
SINGLE_PROCESS = "RPCClient -> runrpc (no --workers), no call log"
WORKERS_1 = "RPCClient -> runrpc --workers 1, no call log"
BURN_WORKERS_1 = "RPCClient -> runrpc --workers 1, no call log (burn)"
BURN_WORKERS_2 = "RPCClient -> runrpc --workers 2, no call log (burn)"
# The HTTP rows (issue 16: the uvicorn row at least as fast as gunicorn's),
# and each web server's ceiling: the same views' answers made without an RPC.
WEB_GEVENT = "HTTP -> gunicorn gevent view -> RPCClient -> runrpc, no call log"
WEB_ASGI = "HTTP -> uvicorn async view -> AsyncRPCClient -> runrpc, no call log"
WEB_GEVENT_BARE = "HTTP -> gunicorn gevent view, no RPC (ceiling)"
WEB_ASGI_BARE = "HTTP -> uvicorn async view, no RPC (ceiling)"
# Issue 27: the target pair's echo made for a user (a signed identity, verified
# by the server), against the same echo anonymous.
AS_USER = "RPCClient as a user -> runrpc, no call log"
# Issue 17: the target pair with the ops endpoint and its metrics on.
METRICS_ON = "RPCClient -> runrpc, no call log, metrics on"

# A typed function against its untyped twin, on the target pair: (typed,
# untyped, the least share of the untyped calls/s the typed keeps).
CONTRACT_TARGETS = [("echo_typed", "echo_str", 0.9), ("order_typed", "order", 0.7)]
CONTRACT_WORKLOADS = ("echo_str", "echo_typed", "order", "order_typed")

PAIRS = [
    Pair(RAW, "raw", "raw", ("echo", "payload", LARGE)),
    Pair(BASELINE, "zerorpc", "zerorpc", ("echo", "payload", "get_ticket", LARGE)),
    Pair(
        "zerorpc per call -> zerorpc",
        "zerorpc-per-call",
        "zerorpc",
        ("echo", "payload", "get_ticket"),
    ),
    Pair("zerorpc -> runrpc", "zerorpc", "runrpc", ("echo", "payload")),
    Pair(
        "zerorpc -> runrpc, no call log",
        "zerorpc",
        "runrpc-quiet",
        ("echo", "payload", "get_ticket"),
    ),
    Pair(
        "zerorpc per call -> runrpc, no call log",
        "zerorpc-per-call",
        "runrpc-quiet",
        ("echo", "payload", "get_ticket"),
    ),
    Pair(
        "django_zrpc client -> runrpc, no call log",
        "core",
        "runrpc-quiet",
        ("echo", "payload", "get_ticket"),
    ),
    Pair("RPCClient -> runrpc", "rpcclient", "runrpc", ("echo", "payload")),
    Pair(
        TARGET_PAIR,
        "rpcclient",
        "runrpc-quiet",
        ("echo", "payload", "get_ticket", *CONTRACT_WORKLOADS),
    ),
    # Right after the pair it is compared with, on the same server: measured
    # later in a round (after the HTTP rows), it ran at half its speed.
    Pair(AS_USER, "rpcclient-as-user", "runrpc-quiet", ("echo",)),
    Pair(DEFAULTS_PAIR, "rpcclient", "runrpc-defaults", ("echo", LARGE)),
    Pair(ASYNC_DEFAULTS_PAIR, "asyncrpcclient", "runrpc-defaults", ("echo", LARGE)),
    Pair(WEB_GEVENT, "http", "web", ("echo", "payload", "get_ticket")),
    Pair(WEB_GEVENT_BARE, "http", "web-bare", ("echo", "payload")),
    # AsyncRPCClient on asyncio (issue 16): tasks instead of greenlets.
    Pair(
        ASYNC_PAIR,
        "asyncrpcclient",
        "runrpc-quiet",
        ("echo", "payload", "get_ticket"),
    ),
    Pair(WEB_ASGI, "http", "web-asgi", ("echo", "payload", "get_ticket")),
    Pair(WEB_ASGI_BARE, "http", "web-asgi-bare", ("echo", "payload")),
    Pair(NAMEKO_REUSED, "nameko-reused", "nameko", ("echo", "payload")),
    Pair("nameko proxy per call -> nameko", "nameko-per-call", "nameko", ("echo", "payload")),
    Pair(GRPC_SYNC, "grpc-sync", "grpc", ("echo", "payload", LARGE)),
    Pair(GRPC_AIO, "grpc-aio", "grpc", ("echo", "payload", LARGE)),
    Pair(GRPC_AIO_SERVER, "grpc-aio", "grpc-aio", ("echo", "payload", LARGE)),
    Pair(ZERO_SYNC, "zero-sync", "zero", ("echo", "payload", LARGE)),
    Pair(ZERO_ASYNC, "zero-async", "zero", ("echo", "payload", LARGE)),
    Pair(SINGLE_PROCESS, "rpcclient", "runrpc-quiet", ("echo",)),
    Pair(WORKERS_1, "rpcclient", "runrpc-workers-1", ("echo",)),
    Pair(BURN_WORKERS_1, "rpcclient", "runrpc-workers-1", ("burn",)),
    Pair(BURN_WORKERS_2, "rpcclient", "runrpc-workers-2", ("burn",)),
    Pair(METRICS_ON, "rpcclient", "runrpc-metrics", ("echo",)),
]
# (label, client kind of benchmarks.clients, server kind) of the ticket_list streams.
STREAM_PAIRS = [
    (BASELINE, "stream-zerorpc", "zerorpc"),
    (TARGET_PAIR, "stream-rpcclient", "runrpc-quiet"),
]
