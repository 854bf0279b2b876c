"""The clients of the benchmark, each run by the runner as a process of its own.

    python -m benchmarks.clients KIND ENDPOINT --pids PID,... --workloads echo,payload
        --callers 1,16,64 --seconds 5
    python -m benchmarks.clients stream-KIND ENDPOINT --pids PID --rows 10000

Prints one JSON line: a list of measurements, one per workload and number of
callers, measured one after the other in this process. Each has the calls, the
seconds, the CPU seconds of this process and of the server processes ``--pids``
in that window, and p50/p99 latency in milliseconds. Callers are gevent
greenlets sharing the client (or, for ``http``, each with its keep-alive
connection); ``raw`` keeps as many requests outstanding on one DEALER instead.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from benchmarks.common import (
    MAX_CALLS,
    METHOD,
    SETTINGS,
    argument,
    check,
    drive,
    memory_before,
    memory_growth,
    own_cpu,
    processes_cpu,
    summary,
)


def _spawn_all_gevent(loop: Callable[[int], None], n: int) -> None:
    import gevent

    gevent.joinall([gevent.spawn(loop, i) for i in range(n)], raise_error=True)


def _django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", SETTINGS)
    import django

    django.setup()


# -- callers: each returns call(workload) -> (i -> None) -------------------------


def zerorpc_reused(endpoint: str) -> Callable[[str], Callable[[int], None]]:
    import zerorpc

    client = zerorpc.Client(endpoint, timeout=30)
    return _by_name(lambda name, arg: getattr(client, name)(arg))


def zerorpc_per_call(endpoint: str) -> Callable[[str], Callable[[int], None]]:
    import zerorpc

    def call(name: str, arg: Any) -> Any:
        client = zerorpc.Client(endpoint, timeout=30)
        try:
            return getattr(client, name)(arg)
        finally:
            client.close()

    return _by_name(call)


def core(endpoint: str) -> Callable[[str], Callable[[int], None]]:
    from django_zrpc.client.gevent.connection import Client

    client = Client(endpoint, timeout=30)
    return _by_name(lambda name, arg: client(name, arg))


def rpcclient(endpoint: str) -> Callable[[str], Callable[[int], None]]:
    _django()
    from django_zrpc import RPCClient

    client = RPCClient(endpoint, timeout=30)  # the default pool: 10 connections
    return _by_name(lambda name, arg: client(name, arg))


def rpcclient_as_user(endpoint: str) -> Callable[[str], Callable[[int], None]]:
    """RPCClient's calls made for user 1: each carries a signed identity the server verifies."""
    _django()
    from django_zrpc import RPCClient

    client = RPCClient(endpoint, timeout=30).as_user(1)
    return _by_name(lambda name, arg: client.call(name, arg))


def _by_name(call: Callable[[str, Any], Any]) -> Callable[[str], Callable[[int], None]]:
    def for_workload(workload: str) -> Callable[[int], None]:
        def one(i: int) -> None:
            arg = argument(workload, i)
            check(workload, arg, call(METHOD[workload], arg))

        return one

    return for_workload


HTTP_PATHS = {"echo": "/bench/echo/", "payload": "/bench/payload/", "get_ticket": "/tickets/{}/"}


def http(endpoint: str) -> Callable[[str], Callable[[int], None]]:
    """One keep-alive HTTP/1.1 connection per greenlet, to gunicorn."""
    import gevent.local
    import gevent.socket

    host, port = endpoint.removeprefix("http://").split(":")
    local = gevent.local.local()

    def connection() -> Any:
        stream = getattr(local, "stream", None)
        if stream is None:
            sock = gevent.socket.create_connection((host, int(port)), timeout=30)
            stream = local.stream = sock.makefile("rwb")
        return stream

    def get(path: str) -> bytes:
        stream = connection()
        stream.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        stream.flush()
        status = stream.readline()
        length, chunked = None, False
        for _ in range(100):
            line = stream.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
        if not status.startswith(b"HTTP/1.1 200"):
            raise AssertionError(f"HTTP {status!r} for {path}")
        if not chunked:
            assert length is not None, "a response without Content-Length"
            return stream.read(length)
        body = b""
        for _ in range(MAX_CALLS):
            size = int(stream.readline().split(b";")[0], 16)
            chunk = stream.read(size + 2)[:size]
            if not size:
                return body
            body += chunk
        raise AssertionError("endless chunked body")

    def for_workload(workload: str) -> Callable[[int], None]:
        template = HTTP_PATHS[workload]

        def one(i: int) -> None:
            arg = argument(workload, i)
            body = json.loads(get(template.format(arg)))
            check(workload, arg, body["value"] if workload != "get_ticket" else body)

        return one

    return for_workload


CALLERS = {
    "zerorpc": zerorpc_reused,
    "zerorpc-per-call": zerorpc_per_call,
    "core": core,
    "rpcclient": rpcclient,
    "rpcclient-as-user": rpcclient_as_user,
    "http": http,
}


def measure(
    kind: str,
    endpoint: str,
    pids: list[int],
    workloads: list[str],
    callers: list[int],
    seconds: float,
) -> list[dict]:
    if kind == "raw":
        results = []
        for workload in workloads:
            memory = memory_before(workload, pids)
            for n in callers:
                result = raw(endpoint, pids, workload, n, seconds)
                results.append({"workload": workload, "callers": n, **result})
                results[-1].update(memory_growth(memory))
        return results
    if kind == "asyncrpcclient":
        from benchmarks import aio_client

        return aio_client.measure(endpoint, pids, workloads, callers, seconds)
    for_workload = CALLERS[kind](endpoint)
    results = []
    for workload in workloads:
        call = for_workload(workload)
        memory = memory_before(workload, pids)  # the warm-up's peak is one of the calls'
        call(0)  # connect and warm up, outside the measurement
        for n in callers:
            result = drive(call, n, seconds, _spawn_all_gevent, pids)
            results.append({"workload": workload, "callers": n, **result, **memory_growth(memory)})
    return results


def raw(endpoint: str, pids: list[int], workload: str, callers: int, seconds: float) -> dict:
    """Keep ``callers`` requests outstanding on one DEALER, as concurrent callers would."""
    import msgpack
    import zmq

    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVTIMEO, 30_000)
    sock.connect(endpoint)
    sent: dict[bytes, float] = {}
    arg = argument(workload, 0)

    def send(i: int) -> None:
        message_id = b"%032d" % i
        header = {"message_id": message_id, "v": 3}
        sent[message_id] = time.perf_counter()
        sock.send_multipart([b"", msgpack.packb((header, "echo", [arg]), use_bin_type=True)])

    def receive() -> float:
        _, blob = sock.recv_multipart()
        header, _name, (result,) = msgpack.unpackb(blob, raw=False)
        check(workload, arg, result)
        return time.perf_counter() - sent.pop(header["response_to"])

    send(0)
    receive()  # connected
    latencies: list[float] = []
    server_cpu = processes_cpu(pids)
    cpu = own_cpu()
    started = time.monotonic()
    deadline = started + seconds
    for i in range(callers):
        send(i)
    count = callers
    for _ in range(MAX_CALLS):
        latencies.append(receive())
        if time.monotonic() < deadline:
            send(count)
            count += 1
        elif not sent:
            break
    result = summary(
        len(latencies),
        time.monotonic() - started,
        own_cpu() - cpu,
        processes_cpu(pids) - server_cpu,
        latencies,
    )
    sock.close()
    return result


def stream(kind: str, endpoint: str, pids: list[int], rows: int) -> dict:
    """Receive ``ticket_list(rows)`` once, one caller; rows/s and CPU."""
    if kind == "stream-zerorpc":
        import zerorpc

        client: Any = zerorpc.Client(endpoint, timeout=60)
    else:
        _django()
        from django_zrpc import RPCClient

        client = RPCClient(endpoint, timeout=60)
    client.echo(1)  # connected
    server_cpu = processes_cpu(pids)
    cpu = own_cpu()
    started = time.monotonic()
    count = 0
    for row in client.ticket_list(rows):
        count += 1
        if count == rows and row["id"] < rows:
            raise AssertionError(f"the last row is {row!r}")
    elapsed = time.monotonic() - started
    if count != rows:
        raise AssertionError(f"{count} rows streamed, not {rows}")
    return {
        "rows": count,
        "seconds": elapsed,
        "cpu": own_cpu() - cpu,
        "server_cpu": processes_cpu(pids) - server_cpu,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("kind")
    parser.add_argument("endpoint")
    parser.add_argument("--pids", default="")
    parser.add_argument("--workloads", default="echo")
    parser.add_argument("--callers", default="1")
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--rows", type=int, default=0)
    args = parser.parse_args()
    pids = [int(p) for p in args.pids.split(",") if p]
    if args.kind.startswith("stream-"):
        result: Any = stream(args.kind, args.endpoint, pids, args.rows)
    else:
        result = measure(
            args.kind,
            args.endpoint,
            pids,
            args.workloads.split(","),
            [int(n) for n in args.callers.split(",")],
            args.seconds,
        )
    print(json.dumps(result))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
