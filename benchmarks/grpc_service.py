"""The gRPC echo server of the benchmark, run with benchmarks/.grpc-venv's Python.

    .grpc-venv/bin/python benchmarks/grpc_service.py sync|aio PORT [--threads N]

``sync``: ``grpc.server`` on a thread pool of ``--threads`` workers, what a
Django team would deploy (Django's ORM and most of its code are synchronous,
so a gRPC service of a Django project runs its handlers in threads: the
run commands of Django's gRPC packages start this server). ``aio``: a ``grpc.aio``
server, its handlers coroutines on one event loop: gRPC's fastest Python
server, for a gRPC side at its best.

One method, ``/zrpc_bench.Bench/echo``, registered as grpcio-tools' generated
code registers it (a registered method, plus the generic handler), with
msgpack as the (de)serializer instead of protobuf: zerorpc's wire is msgpack
too, so both sides of the comparison pay for the same codec, and no protoc
step is needed. The clients are in benchmarks/grpc_client.py.
"""

from __future__ import annotations

import argparse
import asyncio
from concurrent import futures
from typing import Any

import grpc
import msgpack

SERVICE = "zrpc_bench.Bench"
ECHO = f"/{SERVICE}/echo"
# Fail on a port already taken rather than share it (Linux's SO_REUSEPORT is
# gRPC's default), and never route 127.0.0.1 through an HTTP proxy from the
# environment. gRPC refuses a message over 4 MiB by default: both ends take
# the large workload's 10 MiB value, as runrpc's default limit (16 MiB) does.
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
OPTIONS = [
    ("grpc.so_reuseport", 0),
    ("grpc.enable_http_proxy", 0),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
]


def pack(value: Any) -> bytes:
    return msgpack.packb(value)


def unpack(data: bytes) -> Any:
    return msgpack.unpackb(data)


def _handlers(echo: Any, serializer: Any = pack) -> dict[str, grpc.RpcMethodHandler]:
    return {
        "echo": grpc.unary_unary_rpc_method_handler(
            echo, request_deserializer=unpack, response_serializer=serializer
        )
    }


def serve_sync(port: int, threads: int) -> None:
    def echo(value: Any, context: grpc.ServicerContext) -> Any:
        return value

    handlers = _handlers(echo)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=threads), options=OPTIONS)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    server.add_registered_method_handlers(SERVICE, handlers)
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    print("ready", flush=True)
    server.wait_for_termination()


async def serve_aio(port: int) -> None:
    # grpc.aio's server encodes a str response to UTF-8 before it calls the
    # response serializer (its Cython serialize()), so the 10 KB string would
    # come back as bytes: the handler packs its answer itself, the same work.
    async def echo(value: Any, context: grpc.aio.ServicerContext) -> bytes:
        return pack(value)

    handlers = _handlers(echo, serializer=None)
    server = grpc.aio.server(options=OPTIONS)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    server.add_registered_method_handlers(SERVICE, handlers)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    print("ready", flush=True)
    await server.wait_for_termination()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["sync", "aio"])
    parser.add_argument("port", type=int)
    parser.add_argument("--threads", type=int, default=64, help="the sync server's pool")
    args = parser.parse_args()
    if args.mode == "sync":
        serve_sync(args.port, args.threads)
    else:
        asyncio.run(serve_aio(args.port))


if __name__ == "__main__":
    main()
