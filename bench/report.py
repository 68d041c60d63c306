"""Figures of the benches: summaries over rounds, the results file, the charts.

Pure functions (no service, no clock), unit-tested in tests/bench/. Every bench writes
`<out>/<name>.json` (what it measured, every round, and the summary) and `<out>/<name>.png`.
The summary and the chart again from a results file's rounds (after a change of either):

    .venv/bin/python bench/report.py bench/results/streaming.json
    .venv/bin/python bench/report.py bench/results/landing.json
    .venv/bin/python bench/report.py bench/results/memory.json
    .venv/bin/python bench/report.py bench/results/stack.json
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
# The goals of issue 12 for the landing job.
GOAL_LANDING_RATIO = 0.7  # the job's own records/s / ConsumerPerformance's (medians), at least
GOAL_NOOP_S = 5.0  # a no-op run through Airflow, start of `land` to end of `report`, at most
# The goal of issue 12 for the stack's memory after a workload.
GOAL_MEMORY_RSS_MIB = 3 * 1024  # the stack's RSS after a workload, at most
GOAL_UP_S = 30.0  # `make up` from stopped to all services healthy, at most


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


# ---- the landing bench ------------------------------------------------------------------------


# The seconds of a landing run (landing_run_figures): fixed_s = launch_s + spark_startup_s + protocol_s.
RUN_SECONDS = ("wall_s", "data_s", "fixed_s", "spark_startup_s", "protocol_s", "launch_s")


def _rounded(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def covered_s(spans: list[tuple[int, int]]) -> float:
    """Seconds covered by (start ms, end ms) spans, a stretch covered by several counted once."""
    total, reach = 0, None
    for start, end in sorted(spans):
        if reach is None or start > reach:
            total, reach = total + end - start, end
        elif end > reach:
            total, reach = total + end - reach, end
    return total / 1000


def landing_run_figures(wall_s: float, report: dict) -> dict:
    """One landing run's figures from its wall time and its run report (`LANDING_REPORT_JSON`).

    The job's own clock: a topic's data time runs from the first record a Spark task fetched
    (`first_record_ms`) to its commit record (`committed_ms`), so its records/s cannot carry the
    start-up nor go negative (a difference of two runs' walls could). It counts the footers, the
    decision, the renames and the commit (after the last record), not the consumer's creation nor
    its first fetch (before the first record). The rest of the wall time is the run's fixed
    cost: fixed_s = launch_s (JVM, Python, the report: the wall outside the topics) +
    spark_startup_s + protocol_s (recover, plan, the Spark job's scheduling, compaction,
    snapshot, of every topic). Topics landed side by side (--parallel-topics) overlap: the run's
    data time is the time covered by at least one topic's data time, and the time in the topics
    the time covered by at least one topic."""
    topics = []
    for t in report.get("topics", []):
        totals = t.get("totals") or {}
        records = totals.get("records", 0)
        first, committed = t.get("first_record_ms"), t.get("committed_ms")
        if first is not None and committed is not None:
            data_s = (committed - first) / 1000
        elif records == 0 and t.get("status") in ("landed", "noop"):
            data_s = 0.0  # nothing read: no data time
        else:
            data_s = None  # failed, or a job without its own clock
        seconds = t.get("seconds")
        topics.append(
            {
                "topic": t.get("topic"),
                "status": t.get("status"),
                "records": records,
                "data_s": _rounded(data_s),
                "seconds": seconds,
                "protocol_s": None if seconds is None or data_s is None else _rounded(seconds - data_s),
                "files": totals.get("files"),
                "bytes": totals.get("bytes"),
                "timings_s": t.get("timings_s"),
                **({"error": t["error"]} if t.get("error") else {}),
            }
        )
    records = sum(t["records"] for t in topics)
    raw = report.get("topics", [])
    data_s = in_topics_s = None
    if topics and None not in [t["data_s"] for t in topics]:
        data_s = covered_s(
            [(t["first_record_ms"], t["committed_ms"]) for t in raw if t.get("first_record_ms")]
        )
    if topics and all(t.get("started_ms") is not None and t.get("finished_ms") is not None for t in raw):
        in_topics_s = covered_s([(t["started_ms"], t["finished_ms"]) for t in raw])
    elif topics and None not in [t["seconds"] for t in topics]:
        in_topics_s = sum(t["seconds"] for t in topics)  # a report from before the instants: in turn
    startup = report.get("spark_startup_s")
    # Spark starts lazily, inside the first topic's write: its start-up is not the protocol's.
    protocol_s = None if data_s is None or in_topics_s is None else in_topics_s - data_s - (startup or 0)
    figures = {
        "wall_s": round(wall_s, 3),
        "status": report.get("status"),
        "spark": report.get("spark"),
        "records": records,
        "data_s": _rounded(data_s),
        "records_per_s": round(records / data_s) if records and data_s else None,
        "fixed_s": None if data_s is None else round(wall_s - data_s, 3),
        "spark_startup_s": startup,
        "protocol_s": _rounded(protocol_s),
        "launch_s": None if in_topics_s is None else round(wall_s - in_topics_s, 3),
        "topics": topics,
    }
    if report.get("status") != "ok":
        figures["error"] = f"run {report.get('status')}: failed topics {report.get('failed_topics')}"
    return figures


def fit_line(xs: Sequence[float], ys: Sequence[float | None]) -> dict | None:
    """Least-squares line y = intercept + slope * x over the points with a y; None without two
    distinct x. r2: the share of the variance the line explains."""
    points = [(x, y) for x, y in zip(xs, ys, strict=True) if y is not None]
    if len({x for x, _ in points}) < 2:
        return None
    mean_x = statistics.fmean(x for x, _ in points)
    mean_y = statistics.fmean(y for _, y in points)
    sxx = sum((x - mean_x) ** 2 for x, _ in points)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in points) / sxx
    intercept = mean_y - slope * mean_x
    ss_total = sum((y - mean_y) ** 2 for _, y in points)
    ss_residual = sum((y - intercept - slope * x) ** 2 for x, y in points)
    return {
        "slope": slope,
        "intercept": intercept,
        "r2": 1 - ss_residual / ss_total if ss_total else 1.0,
        "n": len(points),
    }


def _get(value, *keys):
    for key in keys:
        value = value.get(key) if isinstance(value, dict) else None
    return value


def _failed(entry: dict) -> bool:
    return bool(entry.get("error"))


def landing_growth(scale: dict) -> dict:
    """How a run's figures grow with its topics and with its topic-partitions: least-squares
    lines over the configurations' medians; records/s also relative to the first configuration."""
    configs = list(scale.values())
    growth: dict = {}
    for key in ("fixed_s", "noop_s", "records_per_s", "wall_s"):
        ys = [_median(c[key]) for c in configs]
        growth[key] = {
            "per_topic": fit_line([c["topics"] for c in configs], ys),
            "per_topic_partition": fit_line([c["topics"] * c["partitions"] for c in configs], ys),
        }
    first = _median(configs[0]["records_per_s"]) if configs else None
    growth["records_per_s_relative"] = {
        name: ratio(_median(c["records_per_s"]), first) for name, c in scale.items()
    }
    return growth


def summarize_landing(results: dict) -> dict:
    """The landing bench's summary: each part's figures as spreads over the runs that did not
    fail (a failed landing leaves out its figures, not ConsumerPerformance's), the ratio to ConsumerPerformance (of the medians, and per round), the growth over the
    configurations, and the goals.

    `results`: {"consumer_perf": {"rounds": [{"consumer_perf": {...}, "landing": {run figures},
                "ratio": x}]}, "scale": {"configurations": [{"name": "5x4", "topics": 5,
                "partitions": 4, "records": n, "rounds": [{"landing": {...}, "noop": {...}}]}]},
                "airflow_noop": {"runs": [{"state", "land_task_s", "land_start_to_report_end_s"}]}}
    """
    summary: dict = {}
    cp_rounds = _get(results, "consumer_perf", "rounds") or []
    if cp_rounds:
        cps = [r.get("consumer_perf") or {} for r in cp_rounds]
        ok = [r for r in cp_rounds if not _failed(r.get("landing") or {"error": "none"})]
        runs = [r["landing"] for r in ok]
        cp_rate = spread(c.get("fetch_records_per_s") for c in cps)
        land_rate = spread(run.get("records_per_s") for run in runs)
        summary["consumer_perf"] = {
            "consumer_perf_records_per_s": cp_rate,  # its own fetch.nMsg.sec: without the group join
            "consumer_perf_nmsg_per_s": spread(c.get("records_per_s") for c in cps),
            "consumer_perf_wall_s": spread(c.get("wall_s") for c in cps),
            "landing_records_per_s": land_rate,
            **{f"landing_{key}": spread(run.get(key) for run in runs) for key in RUN_SECONDS},
            "ratio_of_medians": ratio(_median(land_rate), _median(cp_rate)),
            "ratios": [r.get("ratio") for r in cp_rounds],
            "ratio": spread(r.get("ratio") for r in ok),
            "rounds": len(cp_rounds),
            "failed_rounds": sum(1 for r in cp_rounds if _failed(r)),
        }
    scale = {}
    for config in _get(results, "scale", "configurations") or []:
        rounds = config.get("rounds", [])
        runs = [r["landing"] for r in rounds if r.get("landing") and not _failed(r["landing"])]
        noops = [r["noop"] for r in rounds if r.get("noop") and not _failed(r["noop"])]
        topics = config["topics"]
        scale[config["name"]] = {
            "topics": topics,
            "partitions": config["partitions"],
            "records": config.get("records"),
            "records_per_s": spread(run.get("records_per_s") for run in runs),
            **{key: spread(run.get(key) for run in runs) for key in RUN_SECONDS},
            "protocol_s_per_topic": spread(
                None if run.get("protocol_s") is None else run["protocol_s"] / topics for run in runs
            ),
            "noop_s": spread(n.get("wall_s") for n in noops),
            # Every no-op run committed every topic without starting a JVM.
            "noop_without_jvm": all(n.get("spark") is False and n.get("noop_topics") == topics for n in noops)
            if noops
            else None,
            "rounds": len(rounds),
            "failed_rounds": sum(1 for r in rounds if _failed(r)),
        }
    if scale:
        summary["scale"] = scale
        summary["growth"] = landing_growth(scale)
    runs = _get(results, "airflow_noop", "runs") or []
    if runs:
        ok = [r for r in runs if r.get("state") == "success"]
        summary["airflow_noop"] = {
            "land_start_to_report_end_s": spread(r.get("land_start_to_report_end_s") for r in ok),
            "land_task_s": spread(r.get("land_task_s") for r in ok),
            "runs": len(runs),
            "failed_runs": len(runs) - len(ok),
        }
    cp = summary.get("consumer_perf") or {}
    noop_airflow = _median(_get(summary, "airflow_noop", "land_start_to_report_end_s"))
    failed = [cp.get("failed_rounds", 0), *(c["failed_rounds"] for c in scale.values())]
    failed.append(_get(summary, "airflow_noop", "failed_runs") or 0)
    failed.append(bool(_get(results, "airflow_noop", "error")))  # its topic never landed
    summary["goals"] = {
        "landing_ratio_at_least_0_7": None
        if cp.get("ratio_of_medians") is None
        else cp["ratio_of_medians"] >= GOAL_LANDING_RATIO,
        "airflow_noop_at_most_5s": None if noop_airflow is None else noop_airflow <= GOAL_NOOP_S,
        "noop_without_jvm": None
        if not scale or None in (c["noop_without_jvm"] for c in scale.values())
        else all(c["noop_without_jvm"] for c in scale.values()),
        "no_failed_round": not any(failed),
    }
    return summary


LANDING_COLOR, PEER_COLOR, NOOP_COLOR = COLORS["spark"], COLORS["kafka_streams"], "#3b75af"


def _bars(ax, xs, spreads, width, label_format: str, **kw) -> None:
    """Bars of the medians with min-max whiskers, each labelled with its median."""
    if not xs:
        return
    heights = [s["median"] if s else 0 for s in spreads]
    ax.bar(xs, heights, width, **kw)
    for x, s in zip(xs, spreads, strict=True):
        if not s:
            ax.annotate("-", (x, 0), ha="center", va="bottom", fontsize=8)
            continue
        ax.errorbar([x], [s["median"]], yerr=[[s["median"] - s["min"]], [s["max"] - s["median"]]],
                    color="black", capsize=3, linewidth=0.8)  # fmt: skip
        ax.annotate(label_format.format(s["median"]), (x, s["max"]), ha="center", va="bottom", fontsize=7)


def plot_landing(summary: dict, path: Path, title: str) -> None:
    """Left: records/s by topics x partitions (one run of all the topics; medians, bars min-max)
    beside ConsumerPerformance's median. Middle: the fixed cost of a run per configuration, Spark
    run against no-op run (no JVM), with the Airflow no-op and its goal. Right: each round's
    ratio to ConsumerPerformance with the goal."""
    plt = _pyplot()
    from matplotlib import ticker

    fig, (rate_ax, cost_ax, ratio_ax) = plt.subplots(
        1, 3, figsize=(16, 4.8), gridspec_kw={"width_ratios": [5, 5, 3]}
    )
    scale = summary.get("scale") or {}
    names = list(scale)
    xs = list(range(len(names)))
    cp = summary.get("consumer_perf") or {}

    _bars(rate_ax, xs, [scale[n]["records_per_s"] for n in names], 0.6, "{:,.0f}", color=LANDING_COLOR,
          label="landing job, all topics in one run")  # fmt: skip
    cp_rate = _median(cp.get("consumer_perf_records_per_s"))
    if cp_rate:
        rate_ax.axhline(cp_rate, color=PEER_COLOR, linestyle="--", linewidth=1,
                        label=f"ConsumerPerformance, 1 topic ({cp_rate:,.0f}/s)")  # fmt: skip
        rate_ax.axhline(GOAL_LANDING_RATIO * cp_rate, color="grey", linestyle=":", linewidth=1,
                        label=f"goal: {GOAL_LANDING_RATIO} x ConsumerPerformance")  # fmt: skip
    land_rate = _median(cp.get("landing_records_per_s"))
    if land_rate:
        rate_ax.axhline(land_rate, color=LANDING_COLOR, linestyle="-.", linewidth=1,
                        label=f"landing job, the same topic ({land_rate:,.0f}/s)")  # fmt: skip
    rate_ax.set_xticks(xs, names)
    rate_ax.set_xlabel("topics x partitions")
    rate_ax.set_ylabel("records/s (first record fetched to commit)")
    if names or cp_rate:
        rate_ax.yaxis.set_major_formatter(ticker.StrMethodFormatter("{x:,.0f}"))
    else:
        rate_ax.set_yticks([])
    rate_ax.set_title("throughput (median of rounds; bars: min-max)", fontsize=10)

    width = 0.38
    _bars(cost_ax, [x - width / 2 for x in xs], [scale[n]["fixed_s"] for n in names], width, "{:.1f}",
          color=LANDING_COLOR, label="Spark run: wall - data time")  # fmt: skip
    _bars(cost_ax, [x + width / 2 for x in xs], [scale[n]["noop_s"] for n in names], width, "{:.1f}",
          color=NOOP_COLOR, label="no-op run, no JVM: wall")  # fmt: skip
    airflow = _median(_get(summary, "airflow_noop", "land_start_to_report_end_s"))
    if airflow is not None:
        cost_ax.axhline(airflow, color=NOOP_COLOR, linestyle="--", linewidth=1,
                        label=f"no-op through Airflow, land to report ({airflow:.1f} s)")  # fmt: skip
    cost_ax.axhline(GOAL_NOOP_S, color="grey", linestyle=":", linewidth=1,
                    label=f"goal: Airflow no-op at most {GOAL_NOOP_S:g} s")  # fmt: skip
    cost_ax.set_xticks(xs, names)
    cost_ax.set_xlabel("topics x partitions")
    cost_ax.set_ylabel("seconds")
    cost_ax.set_title("fixed cost of a run (median; bars: min-max)", fontsize=10)

    ratios = cp.get("ratios") or []
    rounds = [(n + 1, r) for n, r in enumerate(ratios) if r is not None]
    if rounds:
        ratio_ax.plot([n for n, _ in rounds], [r for _, r in rounds], "o", color=LANDING_COLOR,
                      label="round: landing / ConsumerPerformance")  # fmt: skip
    if cp.get("ratio_of_medians") is not None:
        ratio_ax.axhline(cp["ratio_of_medians"], color=LANDING_COLOR, linewidth=1,
                         label=f"ratio of the medians ({cp['ratio_of_medians']:.2f})")  # fmt: skip
    ratio_ax.axhline(GOAL_LANDING_RATIO, color="grey", linestyle=":", linewidth=1,
                     label=f"goal: at least {GOAL_LANDING_RATIO}")  # fmt: skip
    ratio_ax.set_xlim(0.5, max(len(ratios), 1) + 0.5)
    ratio_ax.set_ylim(0, max([1.0, *(1.15 * r for _, r in rounds)]))
    ratio_ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True, min_n_ticks=1))
    ratio_ax.set_xlabel("round")
    ratio_ax.set_ylabel("landing records/s / ConsumerPerformance's")
    ratio_ax.set_title("ratio per round (1 topic)", fontsize=10)

    pad = max(0, 3 - len(names)) / 2  # a lone configuration's bars as wide as one of three
    for ax in (rate_ax, cost_ax):
        ax.set_ylim(0, ax.get_ylim()[1] * 1.35)  # room for the legend above the bars
        ax.set_xlim(-0.5 - pad, len(names) - 0.5 + pad)
    for ax in (rate_ax, cost_ax, ratio_ax):
        ax.grid(True, axis="y", linewidth=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc="lower left" if ax is ratio_ax else "upper left")
        if not (names or ax is ratio_ax):
            ax.annotate("no configuration measured", (0.5, 0.5), xycoords="axes fraction", ha="center")
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def landing_title(results: dict) -> str:
    settings = results["settings"]
    cp_rounds = len(_get(results, "consumer_perf", "rounds") or [])
    configs = len(_get(results, "scale", "configurations") or [])
    airflow_runs = len(_get(results, "airflow_noop", "runs") or [])
    parts = [
        f"{cp_rounds} round(s) of {settings.get('records', 0):,} records vs ConsumerPerformance"
        if cp_rounds
        else "",
        f"{configs} configuration(s) of {settings.get('scale_records', 0):,} records" if configs else "",
        f"{airflow_runs} no-op run(s) through Airflow" if airflow_runs else "",
    ]
    partial = "" if results.get("complete", True) else ", interrupted"
    return (
        f"landing job: {'; '.join(p for p in parts if p) or 'nothing measured'}{partial}, "
        f"{results['host']['cpus']} cores, {results['started'][:10]}"
        + (" (--quick)" if settings.get("quick") else "")
    )


# ---- memory -----------------------------------------------------------------------------------

# The scheduler's process tree holds more than the scheduler: the LocalExecutor's workers, a task
# process per running task, and the Spark jobs those tasks submitted. Shown apart.
STREAMING_JOB = "streaming job"
SPARK_JOBS = "other Spark jobs"
EXECUTOR_WORKERS = "executor workers"
TASK_PROCESSES = "task processes"
OUTSIDE = "outside the service trees"  # e.g. a spark-submit JVM whose task process was killed


def memory_part(service: str, cmdline: Sequence[str]) -> str:
    """The part of the stack a process of `service`'s tree belongs to, from its command line."""
    if service != "airflow-scheduler":
        return service
    line = " ".join(cmdline)
    if "wordcount_stream" in line:
        return STREAMING_JOB  # spark-submit's JVM (--name wordcount_stream) and its Python driver
    if "org.apache.spark" in line or "spark_jobs/" in line:
        return SPARK_JOBS
    if line.startswith("airflow worker -- LocalExecutor"):
        return EXECUTOR_WORKERS
    if line.startswith("airflow worker -- "):
        return TASK_PROCESSES
    return service


# The order of the chart and the table (the results file sorts its keys): the stack's services in
# start order, the scheduler's tree beside the scheduler.
PART_ORDER = ("postgres", "kafka", "namenode", "datanode", "airflow-api-server", "airflow-scheduler",
              EXECUTOR_WORKERS, TASK_PROCESSES, STREAMING_JOB, SPARK_JOBS, "airflow-dag-processor",
              "airflow-triggerer", OUTSIDE)  # fmt: skip


def part_rank(name: str) -> tuple[int, str]:
    return (PART_ORDER.index(name) if name in PART_ORDER else len(PART_ORDER), name)


def memory_total(parts: dict | None) -> dict | None:
    if parts is None:
        return None
    return {
        "processes": sum(p["processes"] for p in parts.values()),
        "rss_mib": sum(p["rss_mib"] for p in parts.values()),
        "pss_mib": sum(p["pss_mib"] for p in parts.values()),
    }


def summarize_memory(results: dict) -> dict:
    """Per part: its figures after the workload (None: no such process then) and its RSS in the
    peak sample; the totals; the goal. The stack's RSS counts each resident page once, however
    many of its processes map it; summed RSS counts it once per process (an overstatement: the
    forked Airflow workers share most of their pages); the goal is judged on the first, or on
    summed RSS when the first could not be read (it is never smaller)."""
    after, peak = results.get("after"), results.get("peak") or {}
    names = sorted({*(after or {}), *peak}, key=part_rank)
    parts = [
        {"part": n, "after": (after or {}).get(n), "peak_rss_mib": (peak.get(n) or {}).get("rss_mib", 0.0)}
        for n in names
    ]
    total = memory_total(after) or {"processes": 0, "rss_mib": None, "pss_mib": None}
    total["peak_rss_mib"] = (memory_total(peak) or {"rss_mib": 0.0})["rss_mib"]
    total["stack_rss_mib"] = results.get("after_stack_rss_mib") if after is not None else None
    total["peak_stack_rss_mib"] = results.get("peak_stack_rss_mib")
    judged = total["stack_rss_mib"] if total["stack_rss_mib"] is not None else total["rss_mib"]
    return {
        "parts": parts,
        "total": total,
        "goal_rss_mib": GOAL_MEMORY_RSS_MIB,
        "goal_on": "stack_rss_mib" if total["stack_rss_mib"] is not None else "rss_mib",
        "goal_met": None if judged is None else judged <= GOAL_MEMORY_RSS_MIB,
        "summed_rss_within_goal": None
        if total["rss_mib"] is None
        else total["rss_mib"] <= GOAL_MEMORY_RSS_MIB,
        "timeline": results.get("timeline") or [],
    }


def plot_memory(summary: dict, path: Path, title: str) -> None:
    """Left: each part's RSS and PSS after the workload, and its RSS in the peak sample.
    Middle: the totals, stacked by part, beside the goal. Right: the totals over the workload."""
    plt = _pyplot()

    parts = summary["parts"]
    fig, (part_ax, total_ax, time_ax) = plt.subplots(
        1, 3, figsize=(20, max(4.5, 0.42 * len(parts) + 1.5)), gridspec_kw={"width_ratios": [3, 2, 3]}
    )
    names = [p["part"] for p in parts]
    ys = list(range(len(parts)))[::-1]
    h = 0.27

    def after(p: dict, key: str) -> float:
        return (p["after"] or {}).get(key, 0.0)

    part_ax.barh([y + h for y in ys], [p["peak_rss_mib"] for p in parts], h, color="#f3c4a8",
                 label="RSS at the peak")  # fmt: skip
    part_ax.barh(ys, [after(p, "rss_mib") for p in parts], h, color="#e25a1c", label="RSS after the workload")
    part_ax.barh([y - h for y in ys], [after(p, "pss_mib") for p in parts], h, color="#7a2e0e",
                 label="PSS after the workload")  # fmt: skip
    for y, p in zip(ys, parts, strict=True):
        part_ax.annotate(f" {after(p, 'rss_mib'):,.0f}", (after(p, "rss_mib"), y), va="center", fontsize=7)
    part_ax.set_yticks(ys, names)
    part_ax.set_xlabel("MiB")
    part_ax.set_title("per part of the stack", fontsize=10)
    part_ax.legend(fontsize=8, loc="lower right")

    cmap = plt.get_cmap("tab20")
    columns = [
        ("RSS after,\nsummed", "rss_mib"),
        ("PSS after,\nsummed", "pss_mib"),
        ("RSS at the\npeak, summed", None),
    ]
    for x, (_label, key) in enumerate(columns):
        bottom = 0.0
        for i, p in enumerate(parts):
            value = p["peak_rss_mib"] if key is None else after(p, key)
            total_ax.bar(x, value, 0.6, bottom=bottom, color=cmap(i % 20),
                         label=p["part"] if x == 0 else None)  # fmt: skip
            bottom += value
        total_ax.annotate(f"{bottom:,.0f}", (x, bottom), ha="center", va="bottom", fontsize=8)
    stack_rss = summary["total"].get("stack_rss_mib")
    if stack_rss is not None:
        total_ax.bar(len(columns), stack_rss, 0.6, color="#555555", label="the stack's RSS, each page once")
        total_ax.annotate(
            f"{stack_rss:,.0f}", (len(columns), stack_rss), ha="center", va="bottom", fontsize=8
        )
        columns.append(("the stack's\nRSS after", None))
    total_ax.axhline(summary["goal_rss_mib"], color="black", linestyle="--", linewidth=1,
                     label=f"goal: RSS after at most {summary['goal_rss_mib']:,} MiB")  # fmt: skip
    total_ax.set_xticks(range(len(columns)), [c[0] for c in columns])
    total_ax.set_ylabel("MiB, summed over the processes")
    total_ax.set_title("the whole stack", fontsize=10)
    total_ax.set_ylim(top=total_ax.get_ylim()[1] * 1.6)  # room for the legend above the bars
    total_ax.legend(fontsize=7, loc="upper center", ncol=2)
    _plot_memory_timeline(time_ax, summary)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _plot_memory_timeline(ax, summary: dict) -> None:
    timeline = summary.get("timeline") or []
    ts = [t["t_s"] for t in timeline]
    for key, label, color in (("rss_mib", "summed RSS", "#e25a1c"), ("pss_mib", "summed PSS", "#7a2e0e"),
                              ("stack_rss_mib", "the stack's RSS, each page once", "#555555")):  # fmt: skip
        points = [(t, s[key]) for t, s in zip(ts, timeline, strict=True) if s.get(key) is not None]
        if points:
            ax.plot([t for t, _ in points], [v for _, v in points], color=color, label=label, linewidth=1.2)
    ax.axhline(summary["goal_rss_mib"], color="black", linestyle="--", linewidth=1, label="goal")
    phase = None
    for t, sample in zip(ts, timeline, strict=True):
        if sample["phase"] != phase:
            phase = sample["phase"]
            ax.axvline(t, color="grey", linewidth=0.5)
            ax.annotate(phase, (t, 0.02), xycoords=("data", "axes fraction"), rotation=90, fontsize=7,
                        va="bottom", ha="right", color="grey")  # fmt: skip
    ax.set_xlabel("seconds since the start")
    ax.set_ylabel("MiB")
    ax.set_ylim(bottom=0)
    ax.set_title("during the workload (every sample)", fontsize=10)
    ax.legend(fontsize=7, loc="lower right")


def memory_title(results: dict) -> str:
    settings = results["settings"]
    rates = ", ".join(f"{r:,}" for r in settings.get("rates", []))
    partial = "" if results.get("complete", True) else ", interrupted"
    return (
        f"stack memory after {rates} lines/s x {settings.get('seconds', 0):g} s into the streaming job, "
        f"{settings.get('landings', 0)} landing run(s)"
        + (", a batch run" if settings.get("batch") else "")
        + f"{partial}; {results['host']['cpus']} cores, {results['started'][:10]}"
        + (" (--quick)" if settings.get("quick") else "")
    )


# ---- start-up ---------------------------------------------------------------------------------


def summarize_stack(results: dict) -> dict:
    """The restarts against the goal (every round within it), and the idle memory's totals."""
    rounds = results.get("restarts") or []
    healthy = [r["healthy_s"] for r in rounds]
    known = [h for h in healthy if h is not None]
    return {
        "healthy_s": healthy,
        "up_s": [r["up_s"] for r in rounds],
        "goal_up_s": GOAL_UP_S,
        "goal_met": bool(known) and len(known) == len(healthy) and max(known) <= GOAL_UP_S,
        "idle_total": memory_total(results.get("idle")),
        "idle_stack_rss_mib": results.get("idle_stack_rss_mib"),
    }


def plot_stack(summary: dict, path: Path, title: str) -> None:
    """Left: each restart, to all healthy and the whole `up`, beside the goal. Right: the idle
    memory's totals (summed RSS, summed PSS, the stack's RSS)."""
    plt = _pyplot()

    fig, (up_ax, mem_ax) = plt.subplots(1, 2, figsize=(11, 4.2), gridspec_kw={"width_ratios": [3, 2]})
    xs = list(range(1, len(summary["up_s"]) + 1))
    width = 0.38
    up_ax.bar([x - width / 2 for x in xs], [h or 0 for h in summary["healthy_s"]], width, color="#e25a1c",
              label="from stopped to all healthy")  # fmt: skip
    up_ax.bar([x + width / 2 for x in xs], summary["up_s"], width, color="#f3c4a8",
              label="the whole `up` (+ topics provisioning)")  # fmt: skip
    up_ax.axhline(summary["goal_up_s"], color="black", linestyle="--", linewidth=1,
                  label=f"goal: healthy within {summary['goal_up_s']:g} s")  # fmt: skip
    up_ax.set_xticks(xs, [f"restart {x}" for x in xs])
    up_ax.set_ylabel("seconds")
    up_ax.set_title("`make up` from stopped", fontsize=10)
    up_ax.legend(fontsize=8, loc="lower right")

    total = summary["idle_total"] or {"rss_mib": 0.0, "pss_mib": 0.0}
    bars = [("summed RSS", total["rss_mib"]), ("summed PSS", total["pss_mib"]),
            ("the stack's RSS,\neach page once", summary["idle_stack_rss_mib"] or 0.0)]  # fmt: skip
    mem_ax.bar(range(len(bars)), [v for _, v in bars], 0.6, color=["#e25a1c", "#7a2e0e", "#555555"])
    for x, (_, v) in enumerate(bars):
        mem_ax.annotate(f"{v:,.0f}", (x, v), ha="center", va="bottom", fontsize=8)
    mem_ax.set_xticks(range(len(bars)), [b for b, _ in bars], fontsize=8)
    mem_ax.set_ylabel("MiB")
    mem_ax.set_title("idle memory of the whole stack", fontsize=10)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def stack_title(results: dict) -> str:
    settings = results["settings"]
    partial = "" if results.get("complete", True) else ", interrupted"
    return (
        f"local stack: {len(results.get('restarts') or [])} restart(s), idle {settings.get('idle', 0):g} s"
        f"{partial}; {results['host']['cpus']} cores, {results['started'][:10]}"
        + (" (--quick, no platform DAGs)" if settings.get("quick") else "")
    )


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description="a bench's summary and chart again from its results file")
    parser.add_argument("results", type=Path, help="e.g. bench/results/streaming.json")
    args = parser.parse_args(argv)
    results = json.loads(args.results.read_text())
    bench = results.get("bench")
    if bench == "streaming":
        results["summary"] = summarize_streaming(results["rounds"])
        plot, title = plot_streaming, streaming_title
    elif bench == "landing":
        results["summary"] = summarize_landing(results)
        plot, title = plot_landing, landing_title
    elif bench == "memory":
        results["summary"] = summarize_memory(results)
        plot, title = plot_memory, memory_title
    elif bench == "stack":
        results["summary"] = summarize_stack(results)
        plot, title = plot_stack, stack_title
    else:
        parser.error(f"{args.results}: not the results of a known bench")
    write_json(args.results, results)
    png = args.results.with_suffix(".png")
    plot(results["summary"], png, title(results))
    print(f"wrote {args.results} and {png}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
