"""The benches' figures: spreads over rounds, the sustained-rate verdict, Spark / peer ratios and
goals, the results file and the chart (no service: synthetic rounds)."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pytest
from PIL import Image

from bench import report
from bench.streaming_bench import judge_step, latencies, parse_args, summary_table


def latency(rate, p50, p99, lost=0):
    return {"rate": rate, "p50": p50, "p99": p99, "lost": lost}


def step(rate, sustained, p50=0.5, p99=1.0, limited_by="lag"):
    return {
        "rate": rate,
        "sustained": sustained,
        "p50": p50,
        "p99": p99,
        "limited_by": None if sustained else limited_by,
    }


def two_rounds():
    spark = [
        {"latency": [latency(1000, 0.9, 1.6), latency(10000, 1.0, 2.4)],
         "throughput": [step(5000, True), step(10000, True), step(25000, False)], "rss_mib": 1000.0},
        {"latency": [latency(1000, 0.7, 1.2), latency(10000, 1.2, 3.0, lost=1)],
         "throughput": [step(5000, True), step(10000, True), step(25000, True), step(50000, False)],
         "rss_mib": 1100.0},
    ]  # fmt: skip
    peer = [
        {"latency": [latency(1000, 0.3, 0.5), latency(10000, 0.4, 0.8)],
         "throughput": [step(5000, True), step(10000, False)], "rss_mib": 300.0},
        {"latency": [latency(1000, 0.35, 0.7), latency(10000, 0.5, 1.0)],
         "throughput": [step(5000, True), step(10000, True), step(25000, False)], "rss_mib": 320.0},
    ]  # fmt: skip
    return [{"round": n + 1, "systems": {"kafka_streams": peer[n], "spark": spark[n]}} for n in range(2)]


def test_percentile_is_nearest_rank():
    values = list(range(1, 101))
    assert report.percentile(values, 50) == 50
    assert report.percentile(values, 99) == 99
    assert report.percentile(values, 100) == 100
    assert report.percentile([3.0], 99) == 3.0
    assert report.percentile([2, 1], 50) == 1
    with pytest.raises(ValueError):
        report.percentile([], 50)


def test_spread_ignores_missing_values():
    assert report.spread([3, None, 1, float("nan"), 2]) == {"min": 1, "median": 2, "max": 3, "n": 3}
    assert report.spread([None]) is None
    assert report.spread([]) is None


def test_max_sustained_is_the_highest_sustained_step():
    assert report.max_sustained([step(5000, True), step(10000, True), step(25000, False)]) == 10000
    assert report.max_sustained([step(5000, False)]) is None
    assert report.max_sustained([]) is None


def test_summary_spreads_every_figure_over_the_rounds():
    summary = report.summarize_streaming(two_rounds())
    spark = summary["systems"]["spark"]
    assert list(summary["systems"]) == ["spark", "kafka_streams"]  # the job first
    assert spark["latency"]["1000"]["p99"] == {"min": 1.2, "median": 1.4, "max": 1.6, "n": 2}
    assert spark["latency"]["10000"]["lost"] == 1
    assert spark["max_sustained"] == {"min": 10000, "median": 17500, "max": 25000, "n": 2}
    assert not spark["capped"] and spark["failed_rounds"] == 0
    assert spark["rss_mib"]["median"] == 1050.0
    # Ladder latency only from sustained steps: 25,000 was sustained in one round of two.
    assert spark["ladder"]["25000"]["sustained"] == 1 and spark["ladder"]["25000"]["rounds"] == 2
    assert spark["ladder"]["25000"]["p99"]["n"] == 1
    assert spark["ladder"]["50000"]["p50"] is None


def test_ratios_are_spark_over_the_peer_and_goals_follow():
    summary = report.summarize_streaming(two_rounds())
    ratios = summary["ratios"]
    assert ratios["throughput"] == pytest.approx(17500 / 7500)
    assert ratios["p99"]["1000"] == pytest.approx(1.4 / 0.6)
    assert ratios["p99"]["10000"] == pytest.approx(2.7 / 0.9)
    assert summary["goals"] == {
        "throughput_ratio_at_least_1": True,
        "p99_ratio_at_most_2": False,  # 2.3x and 3x
        "p99_at_1000_at_most_2s": True,  # 1.4 s
        "no_marker_lost": False,  # 1 at 10,000 lines/s
        "no_failed_round": True,
    }


def test_a_round_that_sustained_nothing_counts_as_zero():
    rounds = two_rounds()
    rounds[0]["systems"]["kafka_streams"]["throughput"] = [step(5000, False)]
    peer = report.summarize_streaming(rounds)["systems"]["kafka_streams"]
    assert peer["max_sustained"] == {"min": 0, "median": 5000, "max": 10000, "n": 2}
    for r in rounds:
        r["systems"]["kafka_streams"]["throughput"] = [step(5000, False)]
    summary = report.summarize_streaming(rounds)
    assert summary["systems"]["kafka_streams"]["max_sustained"]["max"] == 0
    assert summary["ratios"]["throughput"] is None
    assert summary["goals"]["throughput_ratio_at_least_1"] is None


def test_a_failed_round_is_counted_and_fails_the_goals():
    rounds = two_rounds()
    rounds[1]["systems"]["spark"] = {"latency": [], "throughput": [], "error": "spark exited with 1"}
    summary = report.summarize_streaming(rounds)
    spark = summary["systems"]["spark"]
    assert spark["failed_rounds"] == 1 and spark["max_sustained"]["min"] == 0
    assert summary["goals"]["no_failed_round"] is False


def test_lost_markers_make_a_percentile_unbounded():
    assert report.percentile([0.1] * 98 + [math.inf] * 2, 99) == math.inf
    assert report.percentile([0.1] * 99 + [math.inf], 99) == 0.1
    rounds = two_rounds()
    rounds[0]["systems"]["spark"]["latency"][0].update(p99=None, lost=700)  # recorded as null
    summary = report.summarize_streaming(rounds)
    assert summary["systems"]["spark"]["latency"]["1000"]["p99"]["max"] == math.inf
    assert summary["ratios"]["p99"]["1000"] == math.inf  # median of 1.2 and inf
    assert summary["goals"]["p99_ratio_at_most_2"] is False
    assert summary["goals"]["p99_at_1000_at_most_2s"] is False
    table = summary_table(summary)
    assert "| latency p99 at 1,000 lines/s | unbounded s (1.20-unbounded) | 0.60 s (0.50-0.70) |" in table


@pytest.mark.parametrize(
    ("spark_capped", "peer_capped", "r", "goal"),
    [
        (False, False, 1.2, True),
        (False, False, 0.8, False),
        (True, False, 1.2, True),  # Spark's figure is a floor: the true ratio is higher still
        (True, False, 0.8, None),
        (False, True, 0.8, False),  # the peer's is a floor: the true ratio is lower still
        (False, True, 1.2, None),
        (True, True, 1.0, None),
    ],
)
def test_throughput_goal_with_capped_ladders(spark_capped, peer_capped, r, goal):
    assert report.throughput_goal(r, spark_capped, peer_capped) is goal


def test_a_ladder_is_capped_at_its_top_or_by_the_producer():
    assert report.capped([step(5000, True), step(10000, True)])
    assert report.capped([step(5000, True), step(10000, False, limited_by="producer")])
    assert not report.capped([step(5000, True), step(10000, False, limited_by="lag")])
    assert not report.capped([])


def test_one_system_alone_has_no_ratios():
    rounds = [{"round": 1, "systems": {"spark": two_rounds()[0]["systems"]["spark"]}}]
    summary = report.summarize_streaming(rounds)
    assert "ratios" not in summary and "goals" not in summary


def test_results_file_is_json_with_inf_as_null(tmp_path):
    path = tmp_path / "out" / "x.json"
    report.write_json(path, {"drain_s": report.finite(math.inf), "p50": 0.5, "s": [{"max": math.inf}]})
    assert json.loads(path.read_text()) == {"drain_s": None, "p50": 0.5, "s": [{"max": None}]}
    assert not list(tmp_path.rglob("*.partial"))


def test_chart_is_a_png_with_both_panels(tmp_path):
    path = tmp_path / "streaming.png"
    report.plot_streaming(report.summarize_streaming(two_rounds()), path, "title")
    with Image.open(path) as img:
        assert img.format == "PNG"
        assert img.size == (1200, 460)
        # Not blank: the systems' colours are drawn.
        colors = {c for _, c in img.convert("RGB").getcolors(maxcolors=1 << 20)}
        assert (0xE2, 0x5A, 0x1C) in colors and (0x23, 0x1F, 0x20) in colors


def test_chart_copes_with_a_system_that_sustained_nothing(tmp_path):
    rounds = two_rounds()
    for r in rounds:
        r["systems"]["kafka_streams"]["throughput"] = [step(5000, False)]
    path = tmp_path / "streaming.png"
    report.plot_streaming(report.summarize_streaming(rounds), path, "title")
    assert path.stat().st_size > 10_000


# ---- the streaming bench's verdict on one rate ---------------------------------------------------


def saw_tooth(rate, seconds, trough, peak, growth=0.0):
    """Lag samples once a second: a trough every 4 s, growing by `growth` lines per second."""
    return [(t, (trough if t % 4 == 0 else peak) + growth * t) for t in range(1, int(seconds) + 1)]


def test_a_steady_saw_tooth_is_sustained():
    verdict = judge_step(saw_tooth(10000, 60, 2000, 15000), 10000, 9990, 1.5, 60, 15, 5)
    assert verdict["sustained"] and verdict["limited_by"] is None
    assert verdict["end_lag_s"] == pytest.approx(0.2)
    assert verdict["lag_growth"] == pytest.approx(0)


def test_growing_lag_is_not_sustained():
    verdict = judge_step(saw_tooth(10000, 60, 2000, 15000, growth=500), 10000, 9990, 1.5, 60, 15, 5)
    assert not verdict["sustained"] and verdict["lag_growth"] > 200 and verdict["limited_by"] == "lag"


def test_a_producer_that_fell_short_or_a_backlog_that_never_drained_is_not_sustained():
    samples = saw_tooth(10000, 60, 2000, 15000)
    assert judge_step(samples, 10000, 9000, 1.5, 60, 15, 5)["limited_by"] == "producer"
    verdict = judge_step(samples, 10000, 9990, math.inf, 60, 15, 5)
    assert not verdict["sustained"] and verdict["limited_by"] == "drain"


def test_no_samples_at_the_end_is_not_sustained():
    verdict = judge_step([], 10000, 9990, 1.0, 60, 15, 5)
    assert not verdict["sustained"] and verdict["end_lag_s"] is None


def test_quick_mode_is_one_short_round_written_outside_the_repo():
    args = parse_args(["--quick"])
    assert args.rounds == 1 and args.seconds <= 5 and args.rates == [2000] and args.latency_rates == [1000]
    assert args.out is None  # main() makes a temp folder: the repo's figures stay
    assert parse_args([]).out.parts[-2:] == ("bench", "results")
    with pytest.raises(SystemExit):
        parse_args(["--systems", "spark,flink"])


def test_summary_table_names_both_systems_and_the_ratios():
    lines = summary_table(report.summarize_streaming(two_rounds()))
    assert lines[0] == "| measure (median of rounds, min-max) | spark | kafka_streams |"
    assert "| latency p99 at 1,000 lines/s | 1.40 s (1.20-1.60) | 0.60 s (0.50-0.70) |" in lines
    assert "| highest sustained rate (lines/s) | 17,500 (10,000-25,000) | 7,500 (5,000-10,000) |" in lines
    assert any(
        line.startswith("Spark / peer: sustained throughput 2.33x; p99 2.33x at 1,000") for line in lines
    )


def test_the_chart_is_drawn_again_from_a_results_file(tmp_path):
    results = {
        "bench": "streaming",
        "started": "2026-12-01T11:00:00+00:00",
        "host": {"cpus": 2},
        "settings": {"quick": False},
        "rounds": two_rounds(),
    }
    path = tmp_path / "streaming.json"
    report.write_json(path, results)
    assert report.main([str(path)]) == 0
    assert (tmp_path / "streaming.png").stat().st_size > 10_000
    assert report.streaming_title(results).endswith("2 round(s), 2 cores, 2026-12-01")


def test_latencies_count_a_lost_marker_as_infinitely_late():
    producer = SimpleNamespace(sent_at={1: 10.0, 2: 11.0, 3: 12.0})
    watcher = SimpleNamespace(seen_at={1: 10.5, 3: 12.25, 4: 99.0})
    assert latencies(producer, watcher, 1, 3) == [0.5, math.inf, 0.25]


def test_an_interrupted_run_says_so_in_its_chart_title():
    results = {"started": "2026-12-01T11:00:00+00:00", "host": {"cpus": 2}, "settings": {"rounds": 3},
               "rounds": two_rounds(), "complete": False}  # fmt: skip
    assert "2 round(s) of 3, interrupted" in report.streaming_title(results)


class CountingProducer:
    """confluent_kafka.Producer as PacedProducer uses it, counting what it is given."""

    def __init__(self, config):
        self.values = []

    def produce(self, topic, value):
        self.values.append(value)

    def poll(self, timeout):
        return 0

    def flush(self, timeout):
        return 0


def test_paced_producer_sends_every_line_even_when_a_tick_comes_late(monkeypatch):
    """A busy machine can wake the producer late, past the end of its phase: the lines still due
    are sent, not dropped (a phase of 1,000 lines/s for 1 s is 1,000 lines, 100 with markers)."""
    import time

    from bench import streaming_bench

    monkeypatch.setattr(streaming_bench, "Producer", CountingProducer)
    real_sleep, stalled = time.sleep, []

    def sleep(seconds):
        if not stalled and time.perf_counter() - start > 0.7:
            stalled.append(True)
            real_sleep(0.5)  # one tick wakes 0.2 s past the end
        real_sleep(seconds)

    monkeypatch.setattr(streaming_bench.time, "sleep", sleep)
    producer = streaming_bench.PacedProducer(type("Cfg", (), {"kafka_bootstrap": "127.0.0.1:1"})(), "in", "t")
    start = time.perf_counter()
    producer.run(1000, 1.0, marker_every=10)
    assert stalled and time.perf_counter() - start >= 1.0
    assert len(producer.producer.values) == producer.produced == 1000
    assert producer.seq == 100 and len(producer.sent_at) == 100
