"""The nameko service of the benchmark, run by ``nameko run`` from benchmarks/.nameko-venv."""

from nameko.rpc import rpc


class Bench:
    name = "zrpc_bench"

    @rpc
    def echo(self, value):
        return value
