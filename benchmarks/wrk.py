"""The HTTP row's load from wrk, when it is installed: one thread, keep-alive connections.

The runner calls :func:`wrk` in its own process (wrk is a program, not a
Python client); its CPU is read from the runner's children, the servers'
from /proc, and its calls and latencies from what wrk prints.
"""

from __future__ import annotations

import re
import resource
import subprocess
import tempfile

from benchmarks.common import TICKET_IDS, processes_cpu

WRK_SCRIPT = """
counter = 0
request = function()
  counter = counter + 1
  return wrk.format("GET", "/tickets/" .. (1 + counter %% %d) .. "/")
end
"""


def wrk(endpoint: str, workload: str, callers: int, seconds: float, pids: list[int]) -> dict:
    """The HTTP row with wrk (one thread, ``callers`` keep-alive connections)."""
    paths = {"echo": "/bench/echo/", "payload": "/bench/payload/", "get_ticket": "/"}
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as script:
        script.write(WRK_SCRIPT % TICKET_IDS)
        script.flush()
        args = ["wrk", "-t1", f"-c{callers}", f"-d{max(1, round(seconds))}s", "--latency"]
        if workload == "get_ticket":
            args += ["-s", script.name]
        args.append(endpoint + paths[workload])
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        server_cpu = processes_cpu(pids)
        out = subprocess.run(args, capture_output=True, text=True, timeout=seconds + 60, check=True)
        server_cpu = processes_cpu(pids) - server_cpu
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    text = out.stdout
    if "Non-2xx" in text or "Socket errors" in text:
        raise RuntimeError(f"wrk saw errors:\n{text}")
    match = re.search(r"(\d+) requests in ([\d.]+)(ms|s|m)\b", text)
    if match is None:
        raise RuntimeError(f"wrk printed no request count:\n{text}")
    calls, elapsed, unit = match.groups()
    return {
        "workload": workload,
        "callers": callers,
        "calls": int(calls),
        "seconds": float(elapsed) * {"ms": 1e-3, "s": 1.0, "m": 60.0}[unit],
        "cpu": (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime),
        "server_cpu": server_cpu,
        "p50_ms": _wrk_ms(text, "50%"),
        "p99_ms": _wrk_ms(text, "99%"),
    }


def _wrk_ms(text: str, percent: str) -> float:
    value, unit = re.search(rf"^\s*{percent}\s+([\d.]+)(us|ms|s)\s*$", text, re.M).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]
