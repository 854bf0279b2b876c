"""The nameko clients of the benchmark, run with benchmarks/.nameko-venv's Python.

    .nameko-venv/bin/python benchmarks/nameko_client.py reused|per-call AMQP_URI
        --pids PID --workloads echo,payload --callers 1,16,64 --seconds 5

``reused``: every caller (an eventlet green thread) keeps one started
``ClusterRpcProxy`` for all its calls, made before the measurement (a proxy is
not safe to share between green threads). ``per-call``: a ``ClusterRpcProxy``
is made for every call, the anti-pattern. Prints the same JSON as
``benchmarks.clients``.
"""

import eventlet

eventlet.monkey_patch()

import json  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from nameko.standalone.rpc import ClusterRpcProxy  # noqa: E402

from benchmarks.common import METHOD, argument, check, drive, peer_arguments  # noqa: E402

SERVICE = "zrpc_bench"


def spawn_all(loop, n):
    threads = [eventlet.spawn(loop, i) for i in range(n)]
    for thread in threads:
        thread.wait()


def main():
    args = peer_arguments(["reused", "per-call"], "AMQP URI of the broker")
    pids = args.pids
    config = {"AMQP_URI": args.target}
    proxies = []  # (context manager, started proxy), one per caller, for "reused"

    def proxy_for(index):
        while len(proxies) <= index:
            manager = ClusterRpcProxy(config, timeout=30)
            proxies.append((manager, manager.start()))
        return proxies[index][1]

    results = []
    try:
        for workload in args.workloads:
            for callers in args.callers:
                if args.mode == "reused":
                    for index in range(callers):
                        proxy_for(index)
                slot = {}  # green thread -> caller index, for "reused"

                def call(i, workload=workload, slot=slot):
                    arg = argument(workload, i)
                    method = METHOD[workload]
                    if args.mode == "reused":
                        current = eventlet.getcurrent()
                        if current not in slot:
                            slot[current] = len(slot)
                        proxy = proxy_for(slot[current])
                        result = getattr(getattr(proxy, SERVICE), method)(arg)
                    else:
                        with ClusterRpcProxy(config, timeout=30) as proxy:
                            result = getattr(getattr(proxy, SERVICE), method)(arg)
                    check(workload, arg, result)

                call(0)  # warm up
                slot.clear()
                result = drive(call, callers, args.seconds, spawn_all, pids)
                results.append({"workload": workload, "callers": callers, **result})
    finally:
        for manager, _ in proxies:
            manager.stop()
    print(json.dumps(results))


if __name__ == "__main__":
    main()
