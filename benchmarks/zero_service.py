"""The zero server of the benchmark, run with benchmarks/.zero-venv's Python.

    .zero-venv/bin/python benchmarks/zero_service.py PORT

zero (PyPI ``zeroapi``): a ZeroMQ RPC framework that encodes with msgspec's
msgpack and validates each call's one argument against the function's type
hints, as a django_zrpc contract does. ``ZeroServer.run(workers=1)``: its
broker (a ROUTER-DEALER proxy in this process) and one worker process, so
that it has one process's worth of Python per call, as runrpc does; its
process ids are this one and its child. zero dispatches by function name,
one function per argument type: ``echo`` (an int), ``payload`` (the 10 KB
string) and ``large_echo`` (the large workload's bytes). The clients are in
benchmarks/zero_client.py.
"""

from __future__ import annotations

import os
import sys
import tempfile

from zero import ZeroServer


def echo(value: int) -> int:
    return value


def payload(value: str) -> str:
    return value


def large_echo(value: bytes) -> bytes:
    return value


def main() -> None:
    port = int(sys.argv[1])
    # The broker and its worker meet on an ipc:// socket that zero makes in
    # the working directory: a folder of its own, not the repository.
    with tempfile.TemporaryDirectory(prefix="zrpc-bench-zero-") as folder:
        os.chdir(folder)
        server = ZeroServer(host="127.0.0.1", port=port)
        for function in (echo, payload, large_echo):
            server.register_rpc(function)
        server.run(workers=1)


if __name__ == "__main__":
    main()
