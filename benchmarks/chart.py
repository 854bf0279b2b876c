"""Draw docs/benchmarks.png from a run's report; run by benchmarks/run.py in .chart-venv.

benchmarks/.chart-venv/bin/python benchmarks/chart.py REPORT.json OUT.png

A panel of calls/s per workload, the streams' rows/s, and last the echo
calls/s of the clients that matter (report["x_floor"]: both django_zrpc
clients against runrpc as deployed, both zero clients, zerorpc, gRPC) as a
share of raw pyzmq's at each number of callers: the floor does not move with
any peer's speed on the day.
"""

import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

TITLES = {
    "echo": "echo of a small int",
    "payload": "echo of a 10 KB string",
    "get_ticket": "get_ticket (PostgreSQL read)",
    "large": "large_echo of a large bytes value",
}


def main() -> None:
    report = json.loads(open(sys.argv[1]).read())
    workloads = list(dict.fromkeys(row["workload"] for row in report["rows"]))
    shares = report.get("x_floor", {})
    panels = len(workloads) + (1 if report["streams"] else 0) + (1 if shares else 0)
    pairs_per_panel = [
        len({r["pair"] for r in report["rows"] if r["workload"] == w}) for w in workloads
    ]
    heights = [*(0.9 + 0.45 * n for n in pairs_per_panel)]
    if report["streams"]:
        heights.append(2.2)
    if shares:
        heights.append(3.2)
    figure, axes = plt.subplots(
        panels, 1, figsize=(11, sum(heights) + 1), gridspec_kw={"height_ratios": heights}
    )
    axes = [axes] if panels == 1 else list(axes)
    callers = report["callers"]
    colors = plt.cm.viridis([i / max(1, len(callers)) for i in range(len(callers))])
    for ax, workload in zip(axes, workloads, strict=False):
        rows = [r for r in report["rows"] if r["workload"] == workload]
        pairs = list(dict.fromkeys(r["pair"] for r in rows))
        height = 0.8 / len(callers)
        for k, n in enumerate(callers):
            rates = {r["pair"]: r["rate"] for r in rows if r["callers"] == n}
            ys = [i + k * height for i in range(len(pairs))]
            ax.barh(
                ys,
                [rates.get(p, 0) for p in pairs],
                height=height,
                color=colors[k],
                label=f"{n} caller{'s' if n > 1 else ''}",
            )
        ax.set_yticks([i + 0.4 - height / 2 for i in range(len(pairs))], pairs, fontsize=8)
        ax.invert_yaxis()
        ax.set_xscale("log")
        ax.set_xlabel("calls/s (log scale)")
        ax.set_title(TITLES.get(workload, workload), fontsize=10, loc="left")
        ax.grid(axis="x", which="both", alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    if report["streams"]:
        ax = axes[len(workloads)]
        streams = report["streams"]
        labels = [f"{s['pair']}, {s['rows']:,} rows" for s in streams]
        bars = ax.barh(range(len(streams)), [s["rate"] for s in streams], color="#4c72b0")
        for bar, s in zip(bars, streams, strict=True):
            ax.text(
                bar.get_width(),
                bar.get_y() + bar.get_height() / 2,
                f"  peak RSS {s['peak_rss_mb']:.1f} MB",
                va="center",
                fontsize=8,
            )
        ax.set_yticks(range(len(streams)), labels, fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel("rows/s, one caller")
        ax.set_title(f"ticket_list streamed ({report['database']})", fontsize=10, loc="left")
        ax.set_xlim(0, max(s["rate"] for s in streams) * 1.35)
    if shares:
        _floor_panel(axes[-1], shares, callers)
    figure.suptitle(
        f"django-zrpc benchmarks, {report['date']}: {report['rounds']} rounds of "
        f"{report['seconds']} s, medians ({report['machine']})",
        fontsize=10,
    )
    figure.tight_layout(rect=(0, 0, 1, 0.985))
    figure.savefig(sys.argv[2], dpi=110)


def _floor_panel(ax, shares, callers):
    """Echo calls/s as a share of raw pyzmq's, one line per pair, by number of callers."""
    levels = [str(n) for n in callers]
    for pair, by_callers in shares.items():
        xs = [i for i, n in enumerate(levels) if n in by_callers]
        ax.plot(xs, [by_callers[levels[i]] for i in xs], marker="o", label=pair)
    ax.axhline(1, color="grey", linewidth=0.8, linestyle="--")
    ax.set_xticks(range(len(levels)), levels)
    ax.set_xlabel("callers")
    ax.set_ylabel("x raw pyzmq")
    ax.set_title("echo calls/s as a share of raw pyzmq's (the floor)", fontsize=10, loc="left")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper right", ncol=2)


if __name__ == "__main__":
    main()
