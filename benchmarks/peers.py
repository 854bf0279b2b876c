"""Many peers: what a server's memory does with thousands of short-lived and idle connections.

    .venv/bin/python benchmarks/peers.py --short 5000 --idle 4000 --rounds 3 --trim
    .venv/bin/python benchmarks/peers.py --server raw           # a bare pyzmq ROUTER echo
    .venv/bin/python benchmarks/peers.py --env MALLOC_ARENA_MAX=2
    .venv/bin/python benchmarks/peers.py --zmq-opt RCVHWM=100 --io-threads 2
    .venv/bin/python benchmarks/peers.py --trim-every 10 --quiet 12

Run by hand, not in CI (issue 13, item 7; the write-up is docs/memory.rst). It
starts one server on 127.0.0.1 (``manage.py runrpc`` of the benchmarks'
settings, or with ``--server raw`` a bare pyzmq ROUTER answering every call),
then, from this process:

1. opens ``--short`` connections, ``--batch`` at a time: connect, one call, close;
2. opens ``--idle`` connections: connect, one call, and keeps them open; closes
   them and waits until the server has closed their sockets too (``--rounds``
   times);
3. waits ``--quiet`` seconds; with ``--trim``, then has the server call glibc's
   ``malloc_trim(0)`` once.

At each step it reports the server's RSS (``VmRSS`` of /proc/PID/status), its
open file descriptors and threads, and what glibc's allocator holds: bytes from
the system, in use and free (``mallinfo2``), and per arena (``malloc_info``).
The server writes those to a file when sent SIGUSR1 (SIGUSR2: trim first). It
is this script run again as ``peers.py serve KIND PORT``, so that it can answer
those signals and take the settings under test without a change to
django_zrpc: ``--zmq-opt NAME=INT`` on its tcp ROUTER before it binds,
``--io-threads`` for its contexts, ``--trim-every S`` (it calls
``malloc_trim(0)`` every S seconds in the gevent hub's thread pool, as
docs/memory.rst recommends), and ``--env NAME=VALUE`` in its environment
(``MALLOC_ARENA_MAX``, ``MALLOC_TRIM_THRESHOLD_``, ``LD_PRELOAD``...; the
``MALLOC_*`` and ``GLIBC_TUNABLES`` variables of this process are not passed on).

Bounded: at most 20,000 connections of each kind, every batch of calls has a
deadline, as has every wait; only 127.0.0.1; the one process it starts is
stopped by its process id (SIGTERM, then SIGKILL). Both processes raise their
soft limit of open files to the hard limit: each idle peer holds two
descriptors here (its TCP socket and its libzmq mailbox) and one in the server.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import resource
import signal
import sys
import tempfile
import time
from pathlib import Path
from xml.etree import ElementTree

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.common import SETTINGS, free_port, log, status_kb  # noqa: E402
from benchmarks.servers import serve_raw  # noqa: E402

CALL_TIMEOUT = 30.0  # seconds for one batch of calls to be answered
SETTLE_TIMEOUT = 60.0  # seconds for the server to close the sockets of gone peers
STATS_TIMEOUT = 10.0  # seconds for the server to write its allocator's figures
MAX_PEERS = 20_000  # --short and --idle are each capped at this
MAX_QUIET = 600.0
RUNRPC_ARGS = ["--noreload", "--skip-checks", "--concurrency", "32", "--backlog", "1000"]


def raise_fd_limit() -> tuple[int, int]:
    """Raise the soft limit of open files to the hard one; return the (soft, hard) in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            pass
    return resource.getrlimit(resource.RLIMIT_NOFILE)


# -- the server side ---------------------------------------------------------


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.mallinfo2.restype = _MallInfo2
    libc.malloc_trim.argtypes = [ctypes.c_size_t]
    libc.fopen.restype = ctypes.c_void_p
    libc.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    libc.fclose.argtypes = [ctypes.c_void_p]
    libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
    return libc


def allocator_stats(libc: ctypes.CDLL, trim: bool) -> dict:
    """What glibc's malloc holds, in kB; trimmed first (malloc_trim(0)) if asked."""
    trimmed = None
    if trim:
        started = time.perf_counter()
        trimmed = libc.malloc_trim(0)
        trimmed_ms = (time.perf_counter() - started) * 1000
    info = libc.mallinfo2()
    stats = {
        "heap_kb": (info.arena + info.hblkhd) // 1024,  # from the system: arenas + mmapped
        "in_use_kb": (info.uordblks + info.hblkhd) // 1024,
        "free_kb": info.fordblks // 1024,  # free chunks the arenas keep
        "arenas": _arenas(libc),
    }
    if trim:
        stats["trimmed"] = trimmed
        stats["trim_ms"] = round(trimmed_ms, 1)
    return stats


def _arenas(libc: ctypes.CDLL) -> list[list[int]]:
    """Each arena's [kB from the system, kB of it free], from malloc_info()."""
    with tempfile.NamedTemporaryFile(suffix=".xml") as xml:
        stream = libc.fopen(xml.name.encode(), b"w")
        if not stream:
            return []
        libc.malloc_info(0, stream)
        libc.fclose(stream)
        root = ElementTree.parse(xml.name).getroot()
    return [
        [
            int(heap.find("system[@type='current']").get("size")) // 1024,
            sum(int(total.get("size")) for total in heap.findall("total")) // 1024,
        ]
        for heap in root.findall("heap")
    ]


def _configure_zmq(opts: dict[str, int], io_threads: int | None, applied: dict) -> None:
    """Apply the settings under test to every context and tcp ROUTER of this process."""
    import zmq

    socket = zmq.Context.socket
    configured: set[int] = set()  # the contexts of this process (they live as long as it)
    bind = zmq.Socket.bind

    def patched_socket(self, *args, **kwargs):
        if io_threads is not None and id(self) not in configured:
            self.set(zmq.IO_THREADS, io_threads)  # before its first socket, or ignored
            configured.add(id(self))
            applied["IO_THREADS"] = self.get(zmq.IO_THREADS)
        return socket(self, *args, **kwargs)

    def patched_bind(self, addr, *args, **kwargs):
        if self.type == zmq.ROUTER and str(addr).startswith("tcp://"):
            for name, value in opts.items():
                try:
                    self.setsockopt(getattr(zmq, name), value)
                    applied[name] = self.getsockopt(getattr(zmq, name))
                except (AttributeError, zmq.ZMQError) as err:
                    applied[name] = f"refused: {err}"
        return bind(self, addr, *args, **kwargs)

    zmq.Context.socket = patched_socket
    zmq.Socket.bind = patched_bind


def serve(kind: str, port: int) -> None:
    """The server process: ``raw`` or ``runrpc``, answering SIGUSR1/SIGUSR2 with its stats."""
    limits = raise_fd_limit()
    stats_file = Path(os.environ["PEERS_STATS_FILE"])
    opts = json.loads(os.environ.get("PEERS_ZMQ_OPTS", "{}"))
    io_threads = int(os.environ["PEERS_IO_THREADS"]) if os.environ.get("PEERS_IO_THREADS") else None
    trim_every = float(os.environ.get("PEERS_TRIM_EVERY") or 0)
    applied: dict = {}
    trims: list[list[float]] = []  # [ms, RSS kB before, RSS kB after] of each periodic trim
    libc = _libc()

    def report(trim: bool) -> None:
        stats = {**allocator_stats(libc, trim), "zmq": applied, "nofile": limits}
        if trim_every:
            stats["periodic_trims"] = trims[-200:]
        with stats_file.open("a") as out:
            out.write(json.dumps(stats) + "\n")

    def trim_once() -> None:
        before = status_kb(os.getpid(), "VmRSS")
        started = time.perf_counter()
        libc.malloc_trim(0)
        ms = (time.perf_counter() - started) * 1000
        trims.append([round(ms, 2), before, status_kb(os.getpid(), "VmRSS")])

    if kind == "raw":
        _configure_zmq(opts, io_threads, applied)
        signal.signal(signal.SIGUSR1, lambda *_: report(False))
        signal.signal(signal.SIGUSR2, lambda *_: report(True))
        if trim_every:
            import threading

            def trimmer() -> None:
                while True:
                    time.sleep(trim_every)
                    trim_once()

            threading.Thread(target=trimmer, daemon=True).start()
        serve_raw(port, max_message_bytes=16 * 1024 * 1024)  # as runrpc sets it
        return
    from gevent import monkey

    monkey.patch_all()  # before Django, as runrpc's launcher does; runrpc then runs in-process
    import gevent

    _configure_zmq(opts, io_threads, applied)
    gevent.signal_handler(signal.SIGUSR1, report, False)
    gevent.signal_handler(signal.SIGUSR2, report, True)
    if trim_every:

        def trimmer() -> None:
            # What docs/memory.rst recommends for the server: in the hub's
            # thread pool, so that the loop keeps serving while it runs.
            while True:
                gevent.sleep(trim_every)
                gevent.get_hub().threadpool.apply(trim_once)

        gevent.spawn(trimmer)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", SETTINGS)
    from django.core.management import execute_from_command_line

    execute_from_command_line(["manage.py", "runrpc", *RUNRPC_ARGS, f"127.0.0.1:{port}"])


# -- the client side ---------------------------------------------------------


class Peers:
    """DEALER sockets of this process, each calling ``echo`` once over its own connection."""

    def __init__(self, endpoint: str, max_sockets: int) -> None:
        import zmq

        self.zmq = zmq
        self.endpoint = endpoint
        self.context = zmq.Context()
        self.context.set(zmq.MAX_SOCKETS, max_sockets)
        self.calls = 0
        self.answered = 0

    def open(self, count: int) -> list:
        """Connect ``count`` sockets, one call on each; return them once every call is answered."""
        import msgpack

        zmq = self.zmq
        sockets = []
        poller = zmq.Poller()
        waiting = {}
        for i in range(count):
            sock = self.context.socket(zmq.DEALER)
            sock.setsockopt(zmq.LINGER, 0)
            sock.connect(self.endpoint)
            self.calls += 1
            message_id = b"%032d" % self.calls
            header = {"message_id": message_id, "v": 3}
            sock.send_multipart([b"", msgpack.packb((header, "echo", [i]), use_bin_type=True)])
            sockets.append(sock)
            waiting[sock] = message_id
            poller.register(sock, zmq.POLLIN)
        deadline = time.monotonic() + CALL_TIMEOUT
        while waiting and time.monotonic() < deadline:
            for sock, _ in poller.poll(1000):
                _, blob = sock.recv_multipart()
                reply, name, _args = msgpack.unpackb(blob, raw=False)
                if name == "_zpc_hb":
                    continue
                if name != "OK" or reply.get("response_to") != waiting.get(sock):
                    raise AssertionError(f"unexpected reply {name!r} {reply!r}")
                del waiting[sock]
                poller.unregister(sock)
                self.answered += 1
        for sock in waiting:
            poller.unregister(sock)
        return sockets

    def close(self, sockets: list) -> None:
        for sock in sockets:
            sock.close(linger=0)


def count_fds(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1


def wait_for_fds(pid: int, at_most: int) -> float:
    """Wait until the server has at most ``at_most`` descriptors open; return the seconds waited."""
    started = time.monotonic()
    while count_fds(pid) > at_most and time.monotonic() - started < SETTLE_TIMEOUT:
        time.sleep(0.2)
    return time.monotonic() - started


class Probe:
    """Samples of the server: RSS and the like from /proc, the allocator's figures on request."""

    def __init__(self, pid: int, stats_file: Path) -> None:
        self.pid = pid
        self.stats_file = stats_file
        self.rows: list[dict] = []

    def sample(self, step: str, trim: bool = False, **extra) -> dict:
        lines = self._lines()
        os.kill(self.pid, signal.SIGUSR2 if trim else signal.SIGUSR1)
        deadline = time.monotonic() + STATS_TIMEOUT
        while len(self._lines()) <= len(lines) and time.monotonic() < deadline:
            time.sleep(0.05)
        fresh = self._lines()[len(lines) :]
        stats = json.loads(fresh[-1]) if fresh else {}
        row = {
            "step": step,
            "rss_kb": status_kb(self.pid, "VmRSS"),
            "anon_kb": status_kb(self.pid, "RssAnon"),
            "hwm_kb": status_kb(self.pid, "VmHWM"),
            "fds": count_fds(self.pid),
            "threads": status_kb(self.pid, "Threads"),
            **{k: v for k, v in stats.items() if k not in ("zmq", "nofile", "periodic_trims")},
            **extra,
        }
        self.rows.append(row)
        self.config = {k: stats.get(k) for k in ("zmq", "nofile", "periodic_trims")}
        log(f"  {step}: RSS {row['rss_kb'] / 1024:.1f} MB, {row['fds']} fds")
        return row

    def _lines(self) -> list[str]:
        try:
            return self.stats_file.read_text().splitlines()
        except OSError:
            return []


def measure(args: argparse.Namespace) -> dict:
    from benchmarks.servers import Server

    limits = raise_fd_limit()
    needed = args.idle + args.batch + 64
    if 2 * needed + 64 > limits[0]:
        raise SystemExit(f"{needed} sockets need about {2 * needed} descriptors; limit {limits}")
    workdir = Path(tempfile.mkdtemp(prefix="zrpc-peers-"))
    stats_file = workdir / "stats.jsonl"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "GLIBC_TUN"))},
        "DJANGO_SETTINGS_MODULE": SETTINGS,
        "DATABASE_URL": f"sqlite:///{workdir / 'db.sqlite3'}",  # echo needs none; keep it out
        "ZRPC_LOG_CALLS": "0",
        "PEERS_STATS_FILE": str(stats_file),
        "PEERS_ZMQ_OPTS": json.dumps(args.zmq_opt),
        "PEERS_IO_THREADS": str(args.io_threads or ""),
        "PEERS_TRIM_EVERY": str(args.trim_every or ""),
        **args.env,
    }
    port = free_port()
    ready = "ready" if args.server == "raw" else "Serving "
    command = [sys.executable, str(Path(__file__).resolve()), "serve", args.server, str(port)]
    server = Server(args.server, command, env, port, ready).wait_ready()
    started = time.monotonic()
    try:
        pid = server.proc.pid
        probe = Probe(pid, stats_file)
        peers = Peers(server.endpoint, needed)
        time.sleep(1.0)
        baseline_fds = count_fds(pid)
        probe.sample("start", key="start")
        t = time.monotonic()
        for done in range(0, args.short, args.batch):
            peers.close(peers.open(min(args.batch, args.short - done)))
        short_s = time.monotonic() - t
        waited = wait_for_fds(pid, baseline_fds + 2)
        probe.sample(f"{args.short} short-lived done", key="short", s=round(short_s + waited, 1))
        for round_ in range(1, args.rounds + 1):
            suffix = f" #{round_}" if args.rounds > 1 else ""
            t = time.monotonic()
            idle: list = []
            while len(idle) < args.idle:
                idle += peers.open(min(args.batch, args.idle - len(idle)))
            time.sleep(1.0)
            key = "idle" if round_ == 1 else None
            probe.sample(
                f"{args.idle} idle open{suffix}", key=key, s=round(time.monotonic() - t, 1)
            )
            peers.close(idle)
            waited = wait_for_fds(pid, baseline_fds + 2)
            probe.sample(f"idle closed{suffix}", s=round(waited, 1))
        time.sleep(args.quiet)
        probe.sample(f"after {args.quiet:g} s quiet", key="quiet")
        if args.trim:
            probe.sample("after malloc_trim(0)", trim=True, key="trim")
        peers.context.destroy(linger=0)
        if server.proc.poll() is not None:
            raise RuntimeError(f"the server exited with {server.proc.returncode}")
    finally:
        server.stop()
        for path in workdir.iterdir():
            path.unlink()
        workdir.rmdir()
    import zmq

    return {
        "server": args.server,
        "short": args.short,
        "idle": args.idle,
        "batch": args.batch,
        "rounds": args.rounds,
        "env": args.env,
        "zmq_opt": args.zmq_opt,
        "io_threads": args.io_threads,
        "trim_every": args.trim_every,
        "server_config": probe.config,
        "calls": peers.calls,
        "answered": peers.answered,
        "client_nofile": limits,
        "pyzmq": zmq.__version__,
        "libzmq": zmq.zmq_version(),
        "glibc": os.confstr("CS_GNU_LIBC_VERSION"),
        "cpus": os.cpu_count(),
        "seconds": round(time.monotonic() - started, 1),
        "rows": probe.rows,
    }


def print_report(result: dict) -> None:
    rows = result["rows"]
    print(
        f"server={result['server']} short={result['short']} idle={result['idle']} "
        f"rounds={result['rounds']} env={result['env'] or '-'} zmq_opt={result['zmq_opt'] or '-'} "
        f"io_threads={result['io_threads'] or 1} trim_every={result['trim_every'] or '-'} "
        f"applied={result['server_config']['zmq'] or '-'}"
    )
    print(
        f"calls answered {result['answered']}/{result['calls']}; pyzmq {result['pyzmq']}, "
        f"libzmq {result['libzmq']}, {result['glibc']}, {result['cpus']} CPUs, "
        f"{result['seconds']} s"
    )
    mb = lambda kb: f"{kb / 1024:.1f}" if isinstance(kb, int) else "-"  # noqa: E731
    print(
        f"{'step':<26} {'RSS MB':>7} {'malloc':>7} {'in use':>7} {'free':>7} {'fds':>5} "
        f"{'thr':>3}  arenas: MB from the system/free"
    )
    for row in rows:
        arenas = " ".join(f"{a / 1024:.0f}/{f / 1024:.0f}" for a, f in row.get("arenas", []))
        print(
            f"{row['step']:<26} {mb(row['rss_kb']):>7} {mb(row.get('heap_kb')):>7} "
            f"{mb(row.get('in_use_kb')):>7} {mb(row.get('free_kb')):>7} {row['fds']:>5} "
            f"{row['threads']:>3}  {arenas}"
        )
    rss = {row["key"]: row["rss_kb"] for row in rows if row.get("key")}
    if result["idle"]:
        live = (rss["idle"] - rss["short"]) / result["idle"] * 1000
        print(f"RSS per 1,000 idle peers (open minus before): {live / 1024:.1f} MB")
    print(f"kept after every peer left: {(rss['quiet'] - rss['start']) / 1024:.1f} MB")
    trims = result["server_config"].get("periodic_trims")
    if trims:
        ms = sorted(t[0] for t in trims)
        freed = max(t[1] - t[2] for t in trims)
        print(
            f"periodic malloc_trim(0) every {result['trim_every']:g} s: {len(ms)} calls, "
            f"median {ms[len(ms) // 2]:.1f} ms, max {ms[-1]:.1f} ms, "
            f"most freed at once {freed / 1024:.1f} MB"
        )
    if "trim" in rss:
        print(f"kept after malloc_trim(0): {(rss['trim'] - rss['start']) / 1024:.1f} MB")


def pairs(values: list[str]) -> dict[str, str]:
    found = {}
    for value in values:
        name, sep, setting = value.partition("=")
        if not sep or not name:
            raise argparse.ArgumentTypeError(f"expected NAME=VALUE, not {value!r}")
        found[name] = setting
    return found


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "serve":
        serve(sys.argv[2], int(sys.argv[3]))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", choices=("runrpc", "raw"), default="runrpc")
    parser.add_argument("--short", type=int, default=5000, help="short-lived connections")
    parser.add_argument("--idle", type=int, default=4000, help="connections kept open")
    parser.add_argument("--batch", type=int, default=100, help="connections opened at once")
    parser.add_argument("--rounds", type=int, default=1, help="times the idle ones come and go")
    parser.add_argument("--quiet", type=float, default=10.0, help="seconds of quiet at the end")
    parser.add_argument("--trim", action="store_true", help="then malloc_trim(0) in the server")
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE for the server")
    parser.add_argument(
        "--zmq-opt", action="append", default=[], help="NAME=INT on the server's ROUTER"
    )
    parser.add_argument(
        "--trim-every", type=float, help="the server calls malloc_trim(0) every SECONDS"
    )
    parser.add_argument("--io-threads", type=int, help="libzmq I/O threads of the server")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args()
    if not (0 <= args.short <= MAX_PEERS and 0 <= args.idle <= MAX_PEERS):
        parser.error(f"--short and --idle must be between 0 and {MAX_PEERS}")
    if not (1 <= args.batch <= 1000 and 1 <= args.rounds <= 10 and 0 <= args.quiet <= MAX_QUIET):
        parser.error(f"--batch must be 1..1000, --rounds 1..10 and --quiet 0..{MAX_QUIET:g}")
    if args.trim_every is not None and not 0.5 <= args.trim_every <= MAX_QUIET:
        parser.error(f"--trim-every must be 0.5..{MAX_QUIET:g} seconds")
    args.env = pairs(args.env)
    args.zmq_opt = {name: int(value) for name, value in pairs(args.zmq_opt).items()}
    result = measure(args)
    if args.json:
        print(json.dumps(result))
    else:
        print_report(result)


if __name__ == "__main__":
    main()
