"""Figures of the benches: summaries over rounds, the results file, the charts.

Pure functions (no service, no clock), unit-tested in tests/bench/. Every bench writes
`<out>/<name>.json` (what it measured, every round, and the summary) and `<out>/<name>.png`.
The summary and the chart again from a results file's rounds (after a change of either):

    .venv/bin/python bench/report.py bench/results/streaming.json
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Iterable, Sequence
from pathlib import Path

# The goals of issue 12 for the streaming job against its Kafka Streams peer.
GOAL_THROUGHPUT_RATIO = 1.0  # Spark's sustained lines/s / the peer's, at least
GOAL_P99_RATIO = 2.0  # Spark's p99 / the peer's, at most
GOAL_P99_S_AT_1000 = 2.0  # Spark's p99 at 1,000 lines/s, at most (seconds)


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (a value that was measured, never an interpolation)."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))]


def spread(values: Iterable[float | None]) -> dict | None:
    """min / median / max / n of the values that exist (inf included: a figure without bound);
    None when there is none."""
    present = [v for v in values if v is not None and not math.isnan(v)]
    if not present:
        return None
    return {
        "min": min(present),
        "median": statistics.median(present),
        "max": max(present),
        "n": len(present),
    }


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b


def max_sustained(steps: Sequence[dict]) -> float | None:
    """The highest rate of a ladder that was sustained (steps stop at the first one that was not)."""
    ok = [s["rate"] for s in steps if s["sustained"]]
    return max(ok) if ok else None


def capped(steps: Sequence[dict]) -> bool:
    """The ladder says "at least": its top rate was sustained, or the bench's own producer could
    not keep the next rate (the system was not what stopped it)."""
    return bool(steps) and (steps[-1]["sustained"] or steps[-1].get("limited_by") == "producer")


def unbounded(value: float | None) -> float:
    """A latency percentile the run could not bound (markers lost) is recorded as null: inf."""
    return math.inf if value is None else value


def _median(s: dict | None) -> float | None:
    return s["median"] if s else None


def summarize_streaming(rounds: Sequence[dict]) -> dict:
    """Per system: latency p50/p99 per input rate and the highest sustained rate, each as a
    spread over the rounds; then Spark's figures as ratios to the peer's, and the goals.

    `rounds`: [{"systems": {name: {"latency": [{rate, p50, p99, lost, ...}],
                                   "throughput": [{rate, sustained, p50, p99, ...}],
                                   "rss_mib": float}}}]
    """
    systems: dict[str, dict] = {}
    names = sorted({name for r in rounds for name in r["systems"]}, key=lambda n: (n != "spark", n))
    for name in names:
        runs = [r["systems"][name] for r in rounds if name in r["systems"]]
        rates = sorted({p["rate"] for run in runs for p in run.get("latency", [])})
        latency = {}
        for rate in rates:
            points = [p for run in runs for p in run.get("latency", []) if p["rate"] == rate]
            latency[str(rate)] = {
                "p50": spread(unbounded(p["p50"]) for p in points),
                "p99": spread(unbounded(p["p99"]) for p in points),
                "lost": sum(p["lost"] for p in points),
            }
        # Latency at the sustained steps of the throughput ladder (markers on every 200th line).
        ladder = {}
        for rate in sorted({s["rate"] for run in runs for s in run.get("throughput", [])}):
            steps = [s for run in runs for s in run.get("throughput", []) if s["rate"] == rate]
            ladder[str(rate)] = {
                "p50": spread(unbounded(s["p50"]) for s in steps if s["sustained"]),
                "p99": spread(unbounded(s["p99"]) for s in steps if s["sustained"]),
                "sustained": sum(1 for s in steps if s["sustained"]),
                "rounds": len(steps),
            }
        systems[name] = {
            "latency": latency,
            "ladder": ladder,
            # A round that sustained nothing (a system that failed before its ladder included)
            # counts as 0, not as a missing round.
            "max_sustained": spread(max_sustained(run.get("throughput", [])) or 0 for run in runs),
            "capped": any(capped(run.get("throughput", [])) for run in runs),
            "rss_mib": spread(run.get("rss_mib") for run in runs),
            "rounds": len(runs),
            "failed_rounds": sum(1 for run in runs if "error" in run),
        }
    summary: dict = {"systems": systems}
    if "spark" in systems and "kafka_streams" in systems:
        spark, peer = systems["spark"], systems["kafka_streams"]
        p99_ratios = {
            rate: ratio(_median(spark["latency"][rate]["p99"]), _median(peer["latency"][rate]["p99"]))
            for rate in spark["latency"]
            if rate in peer["latency"]
        }
        throughput_ratio = ratio(_median(spark["max_sustained"]), _median(peer["max_sustained"]))
        summary["ratios"] = {"throughput": throughput_ratio, "p99": p99_ratios}
        p99_1000 = spark["latency"].get("1000", {}).get("p99")
        summary["goals"] = {
            "throughput_ratio_at_least_1": throughput_goal(throughput_ratio, spark["capped"], peer["capped"]),
            # nan (both unbounded) and inf (Spark's unbounded) compare False: not met.
            "p99_ratio_at_most_2": None
            if not p99_ratios or None in p99_ratios.values()
            else all(r <= GOAL_P99_RATIO for r in p99_ratios.values()),
            "p99_at_1000_at_most_2s": None if p99_1000 is None else p99_1000["median"] <= GOAL_P99_S_AT_1000,
            "no_marker_lost": all(v["lost"] == 0 for m in (spark, peer) for v in m["latency"].values()),
            "no_failed_round": spark["failed_rounds"] == 0 and peer["failed_rounds"] == 0,
        }
    return summary


def throughput_goal(r: float | None, spark_capped: bool, peer_capped: bool) -> bool | None:
    """Spark's sustained rate at least the peer's. A capped figure is a floor, so the ratio is a
    floor when Spark's is capped and a ceiling when the peer's is: None when it cannot tell."""
    if r is None:
        return None
    met = r >= GOAL_THROUGHPUT_RATIO
    if spark_capped and peer_capped:
        return None
    if spark_capped:
        return True if met else None
    if peer_capped:
        return False if not met else None
    return met


def write_json(path: Path, data: dict) -> None:
    """inf and nan (a latency without bound, a backlog that never drained) are written as null."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    tmp.write_text(json.dumps(_json_safe(data), indent=2, sort_keys=True, allow_nan=False) + "\n")
    tmp.replace(path)


def _json_safe(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def finite(value: float) -> float | None:
    """inf / nan (a backlog that never drained) as null in the results file."""
    return value if math.isfinite(value) else None


# ---- charts -----------------------------------------------------------------------------------

LABELS = {"spark": "Spark Structured Streaming (the job)", "kafka_streams": "Kafka Streams (peer)"}
COLORS = {"spark": "#e25a1c", "kafka_streams": "#231f20"}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def _errorbar(ax, xs, spreads, **kw) -> None:
    """Medians with min-max bars; a point without bound (markers lost) is left out, an unbounded
    max draws no upper bar."""
    points = [(x, s) for x, s in zip(xs, spreads, strict=True) if s and math.isfinite(s["median"])]
    if not points:
        return
    med = [s["median"] for _, s in points]
    low = [s["median"] - s["min"] for _, s in points]
    high = [s["max"] - s["median"] if math.isfinite(s["max"]) else 0 for _, s in points]
    ax.errorbar([x for x, _ in points], med, yerr=[low, high], capsize=3, marker="o", markersize=4, **kw)


def plot_streaming(summary: dict, path: Path, title: str) -> None:
    """Left: latency p50 and p99 over the input rate (median of the rounds, bars min-max).
    Right: the highest sustained rate of each system."""
    plt = _pyplot()
    from matplotlib import ticker

    fig, (lat_ax, tp_ax) = plt.subplots(1, 2, figsize=(12, 4.6), gridspec_kw={"width_ratios": [3, 2]})
    names = list(summary["systems"])
    for name in names:
        sysm = summary["systems"][name]
        points = {int(r): v for r, v in sysm["ladder"].items() if v["p50"]}
        points.update({int(r): v for r, v in sysm["latency"].items() if v["p50"]})
        rates = sorted(points)
        if not rates:
            continue
        color = COLORS.get(name)
        label = LABELS.get(name, name)
        _errorbar(lat_ax, rates, [points[r]["p50"] for r in rates], color=color, label=f"{label} p50")
        _errorbar(
            lat_ax,
            rates,
            [points[r]["p99"] for r in rates],
            color=color,
            linestyle="--",
            label=f"{label} p99",
        )
    lat_ax.set_xscale("log")
    lat_ax.set_yscale("log")
    lat_ax.set_xlabel("input rate (lines/s, ~10 words each)")
    lat_ax.set_ylabel("produce-to-count latency (s)")
    for axis, label in ((lat_ax.xaxis, "{x:,.0f}"), (lat_ax.yaxis, "{x:g}")):
        axis.set_major_locator(ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        axis.set_major_formatter(ticker.StrMethodFormatter(label))
        axis.set_minor_formatter(ticker.NullFormatter())
    lat_ax.axhline(GOAL_P99_S_AT_1000, color="grey", linewidth=0.8, linestyle=":")
    lat_ax.annotate("2 s: p99 goal at 1,000 lines/s", (0.01, GOAL_P99_S_AT_1000), xycoords=("axes fraction", "data"),
                    ha="left", va="bottom", fontsize=8, color="grey")  # fmt: skip
    lat_ax.grid(True, which="both", linewidth=0.3)
    lat_ax.legend(fontsize=8)
    lat_ax.set_title("latency (median of rounds; bars: min-max)", fontsize=10)

    values = [summary["systems"][n]["max_sustained"] for n in names]
    xs = range(len(names))
    heights = [v["median"] if v else 0 for v in values]
    tp_ax.bar(xs, heights, color=[COLORS.get(n, "#888888") for n in names])
    for x, v, name in zip(xs, values, names, strict=True):
        if v and v["max"] > 0:
            tp_ax.errorbar([x], [v["median"]], yerr=[[v["median"] - v["min"]], [v["max"] - v["median"]]],
                           color="black", capsize=4)  # fmt: skip
            floor = "at least " if summary["systems"][name]["capped"] else ""
            tp_ax.annotate(f"{floor}{v['median']:,.0f}", (x, v["max"]), ha="center", va="bottom", fontsize=9)
        else:
            tp_ax.annotate("below the\nfirst step", (x, 0), ha="center", va="bottom", fontsize=9)
    tp_ax.set_xticks(list(xs), [LABELS.get(n, n).split(" (")[0] for n in names], fontsize=9)
    tp_ax.set_ylabel("highest sustained rate (lines/s)")
    tp_ax.set_title("throughput without growing lag", fontsize=10)
    tp_ax.grid(True, axis="y", linewidth=0.3)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def streaming_title(results: dict) -> str:
    settings = results["settings"]
    partial = "" if results.get("complete", True) else f" of {settings.get('rounds')}, interrupted"
    return (
        f"streaming word count vs. Kafka Streams, {len(results['rounds'])} round(s){partial}, "
        f"{results['host']['cpus']} cores, {results['started'][:10]}"
        + (" (--quick)" if settings.get("quick") else "")
    )


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description="a bench's summary and chart again from its results file")
    parser.add_argument("results", type=Path, help="e.g. bench/results/streaming.json")
    args = parser.parse_args(argv)
    results = json.loads(args.results.read_text())
    if results.get("bench") != "streaming":
        parser.error(f"{args.results}: not the results of a known bench")
    results["summary"] = summarize_streaming(results["rounds"])
    write_json(args.results, results)
    png = args.results.with_suffix(".png")
    plot_streaming(results["summary"], png, streaming_title(results))
    print(f"wrote {args.results} and {png}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
