"""A load of many callers sharing one ``RPCClient``, reported as JSON lines (issue 15).

    python tests/fleet_client.py ENDPOINT [ENDPOINT ...] --callers 64 --seconds 15

``tests/client/test_fleet_hosts.py`` runs it on a test host of its own. Each caller
(a greenlet) calls the probes' ``server_pid`` again and again until the time
is up. On stdout, one JSON object a line, each with ``t`` (``time.monotonic()``,
the same clock as the test's: namespaces share it):

- ``{"event": "start", "pid": ..., "endpoints": [...]}`` once the client exists;
- ``{"event": "second", "t": ..., "served": {"<server pid>": calls}, "fresh": {...},
  "failed": n}`` every second, for the calls that ended in that second
  (``fresh``: those of them that took less than ``--late`` seconds);
- ``{"event": "late", "t": ..., "started": ..., "pid": ...}`` for each call
  that succeeded but took ``--late`` seconds or more;
- ``{"event": "failure", "t": ..., "started": ..., "type": "LostRemote",
  "message": ..., "endpoint": "tcp://..."}`` for each call that raised
  (``endpoint``: the connection's, when the call reached one);
- ``{"event": "summary", "calls": ..., "failures": ..., "served": {...}}`` last,
  after every caller has stopped.

SIGTERM ends the load early: the callers finish their calls in flight, then
the summary is printed. Exits 0 once it is, whatever failed: the test judges.
"""

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections import Counter  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import gevent  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")

import django  # noqa: E402

django.setup()

from django_zrpc import RPCClient  # noqa: E402
from django_zrpc.client.gevent.connection import Client  # noqa: E402

_call_on_connection = Client.call


def _call_naming_endpoint(self: Client, *args: Any, **kwargs: Any) -> Any:
    """``Client.call``, and an exception it raises says which endpoint the call was on."""
    try:
        return _call_on_connection(self, *args, **kwargs)
    except Exception as err:
        err.fleet_endpoint = self.endpoint  # type: ignore[attr-defined]
        raise


Client.call = _call_naming_endpoint  # type: ignore[method-assign]


def emit(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event, "t": time.monotonic(), **fields}), flush=True)


class Load:
    """The callers' shared counts, and the reporter of each second."""

    def __init__(self, client: RPCClient, seconds: float, pause: float, late: float) -> None:
        self.client = client
        self.pause = pause
        self.late = late
        self.end = time.monotonic() + seconds
        self.second: Counter[int] = Counter()
        self.fresh: Counter[int] = Counter()
        self.failed_this_second = 0
        self.total: Counter[int] = Counter()
        self.failures = 0

    def finish(self) -> None:
        """End the load now: no caller starts another call."""
        self.end = min(self.end, time.monotonic())

    def caller(self) -> None:
        while time.monotonic() < self.end:
            started = time.monotonic()
            try:
                pid = self.client.server_pid()
            except Exception as err:
                self.failures += 1
                self.failed_this_second += 1
                emit(
                    "failure",
                    started=started,
                    type=type(err).__name__,
                    message=str(err)[:300],
                    endpoint=getattr(err, "fleet_endpoint", None),
                )
                gevent.sleep(0.05)  # a failing caller does not spin
                continue
            self.second[pid] += 1
            self.total[pid] += 1
            if time.monotonic() - started < self.late:
                self.fresh[pid] += 1
            else:
                emit("late", started=started, pid=pid)
            gevent.sleep(self.pause)

    def reporter(self) -> None:
        while time.monotonic() < self.end + 1:
            gevent.sleep(1.0)
            second, self.second = self.second, Counter()
            fresh, self.fresh = self.fresh, Counter()
            failed, self.failed_this_second = self.failed_this_second, 0
            emit(
                "second",
                served={str(p): n for p, n in second.items()},
                fresh={str(p): n for p, n in fresh.items()},
                failed=failed,
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("endpoints", nargs="+")
    parser.add_argument("--callers", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--timeout", type=float, default=10.0)
    parser.add_argument("--heartbeat", type=float, default=1.0)
    parser.add_argument("--down-for", type=float, default=2.0)
    parser.add_argument("--connect-timeout", type=float, default=1.0)
    parser.add_argument("--late", type=float, default=1.0, help="seconds that make a call late")
    parser.add_argument(
        "--pause", type=float, default=0.0, help="seconds a caller waits between two calls"
    )
    parser.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="NAME=SECONDS",
        help="another RPCClient option, e.g. refresh=1",
    )
    options = parser.parse_args()
    extra = {name: float(value) for name, value in (o.split("=", 1) for o in options.option)}
    endpoints = options.endpoints[0] if len(options.endpoints) == 1 else options.endpoints
    client = RPCClient(
        endpoints,
        timeout=options.timeout,
        heartbeat=options.heartbeat,
        down_for=options.down_for,
        connect_timeout=options.connect_timeout,
        **extra,
    )
    emit("start", pid=os.getpid(), endpoints=options.endpoints, callers=options.callers)
    load = Load(client, options.seconds, options.pause, options.late)
    gevent.signal_handler(signal.SIGTERM, load.finish)
    reporter = gevent.spawn(load.reporter)
    callers = [gevent.spawn(load.caller) for _ in range(options.callers)]
    gevent.joinall(callers, timeout=options.seconds + options.timeout + 5)
    gevent.killall([c for c in callers if not c.ready()], timeout=5)
    reporter.join(timeout=3)
    client.close()
    emit(
        "summary",
        calls=sum(load.total.values()),
        failures=load.failures,
        served={str(p): n for p, n in load.total.items()},
        unfinished=sum(1 for c in callers if not c.successful()),
    )


if __name__ == "__main__":
    main()
