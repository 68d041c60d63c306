"""The landing bench's figures: a run's figures from its report (the job's own clock), the
summaries over rounds, the growth lines, the goals, the results file and the chart, and the
bench's own parsing (no service: synthetic reports and rounds)."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from bench import report
from bench.landing_bench import (
    airflow_task_seconds,
    consumer_perf_figures,
    noop_figures,
    parse_args,
    parse_consumer_perf,
    parse_matrix,
    records_per_topic,
    summary_table,
)

T0 = 1_796_133_777_000  # epoch ms


def topic_report(name, records, first_ms, committed_ms, seconds, status="landed"):
    return {
        "topic": name,
        "status": status,
        "totals": {"records": records, "bytes": records * 18, "files": 2, "quarantined": 0},
        "first_record_ms": first_ms,
        "committed_ms": committed_ms,
        "seconds": seconds,
        "timings_s": {"plan": 0.2, "write": seconds - 0.5},
    }


def run_report(*topics, startup=4.0, status="ok", spark=True):
    return {
        "run_id": "r",
        "status": status,
        "failed_topics": [t["topic"] for t in topics if t["status"] == "error"],
        "topics": list(topics),
        "spark_startup_s": startup,
        "spark": spark,
    }


def run_figures(records, data_s, wall_s, startup=4.0, protocol_s=1.0):
    """The figures of a one-topic run: `data_s` of data time, its protocol `protocol_s` beside
    Spark's start-up, the rest of `wall_s` outside the topic."""
    seconds = data_s + startup + protocol_s
    t = topic_report("t", records, T0, T0 + round(data_s * 1000), seconds)
    return report.landing_run_figures(wall_s, run_report(t, startup=startup))


# ---- one run --------------------------------------------------------------------------------


def test_a_runs_rate_is_its_records_over_the_time_from_first_record_to_commit():
    a = topic_report("a", 3_000_000, T0 + 5_000, T0 + 7_000, 7.5)  # 2 s of data; Spark starts in it
    b = topic_report("b", 1_000_000, T0 + 8_000, T0 + 9_000, 1.5)  # 1 s of data
    figures = report.landing_run_figures(12.0, run_report(a, b, startup=4.0))
    assert figures["records"] == 4_000_000 and figures["data_s"] == 3.0
    assert figures["records_per_s"] == round(4_000_000 / 3)  # not the wall's: start-up left out
    assert figures["fixed_s"] == 9.0  # the wall less the data time
    assert figures["spark_startup_s"] == 4.0
    assert figures["protocol_s"] == 2.0  # (7.5 - 2) + (1.5 - 1) less the start-up inside topic a
    assert figures["launch_s"] == 3.0  # the wall outside the topics (JVM, Python, the report)
    assert figures["fixed_s"] == figures["launch_s"] + figures["spark_startup_s"] + figures["protocol_s"]
    assert [t["protocol_s"] for t in figures["topics"]] == [5.5, 0.5]
    assert "error" not in figures and figures["spark"] is True


def test_topics_landed_side_by_side_count_each_second_of_the_run_once():
    """--parallel-topics: spans that overlap are one stretch of the run, not the sum."""
    a = topic_report("a", 3_000_000, T0 + 5_000, T0 + 9_000, 9.5)  # data 5-9 s, in the run 0-9.5 s
    b = topic_report("b", 1_000_000, T0 + 8_000, T0 + 10_000, 4.0)  # data 8-10 s, in the run 6-10 s
    a["started_ms"], a["finished_ms"] = T0, T0 + 9_500
    b["started_ms"], b["finished_ms"] = T0 + 6_000, T0 + 10_000
    figures = report.landing_run_figures(12.0, run_report(a, b, startup=4.0))
    assert figures["data_s"] == 5.0  # 5 s to 10 s: the 1 s both moved data counted once
    assert figures["records_per_s"] == 800_000
    assert figures["launch_s"] == 2.0  # the wall outside the 10 s some topic was running
    assert figures["protocol_s"] == 1.0  # 10 s in topics - 5 s of data - 4 s of start-up
    assert figures["fixed_s"] == figures["launch_s"] + figures["spark_startup_s"] + figures["protocol_s"]
    assert report.covered_s([(0, 1000), (2000, 3000)]) == 2.0
    assert report.covered_s([(0, 3000), (1000, 2000), (2500, 4000)]) == 4.0
    assert report.covered_s([]) == 0.0


def test_a_topic_with_nothing_new_has_no_data_time_and_a_run_without_records_no_rate():
    noop = topic_report("a", 0, None, T0, 0.4, status="noop")
    figures = report.landing_run_figures(5.0, run_report(noop, startup=None))
    assert figures["data_s"] == 0.0 and figures["records_per_s"] is None
    assert figures["fixed_s"] == 5.0 and figures["protocol_s"] == 0.4


def test_a_report_without_the_jobs_clock_gives_no_rate_rather_than_a_wrong_one():
    old = topic_report("a", 1000, None, None, 9.0)
    figures = report.landing_run_figures(20.0, run_report(old))
    assert figures["records"] == 1000
    assert figures["records_per_s"] is None and figures["fixed_s"] is None and figures["protocol_s"] is None
    assert figures["launch_s"] == 11.0


def test_a_failed_run_says_so():
    bad = {"topic": "b", "status": "error", "error": "boom"}
    figures = report.landing_run_figures(
        20.0, run_report(topic_report("a", 10, T0, T0 + 10, 1.0), bad, status="failed")
    )
    assert "['b']" in figures["error"] and figures["topics"][1]["error"] == "boom"
    assert figures["records_per_s"] is None  # the failed topic has no data time


# ---- summaries ------------------------------------------------------------------------------


def cp_round(k, cp_rate, land_rate, error=None):
    records = 5_000_000
    landing = run_figures(records, records / land_rate, records / land_rate + 10)
    entry = {
        "round": k,
        "consumer_perf": {"wall_s": 9.0, "fetch_records_per_s": cp_rate, "records_per_s": cp_rate * 0.6},
        "landing": landing,
        "ratio": round(land_rate / cp_rate, 3),
    }
    if error:  # as the bench records a failed landing
        entry["error"] = landing["error"] = error
        entry["ratio"] = None
    return entry


def scale_config(topics, partitions, fixed_s, noop_s, rate, rounds=3, spark=False):
    records = 2_000_000
    entries = []
    for k in range(rounds):
        data_s = records / (rate * (1 + 0.1 * (k - 1)))  # rounds at 0.9, 1 and 1.1 x the rate
        landing = run_figures(records, data_s, data_s + fixed_s + 0.2 * (k - 1))
        noop = {"wall_s": noop_s + 0.1 * (k - 1), "status": "ok", "spark": spark, "topics": topics,
                "noop_topics": topics}  # fmt: skip
        entries.append({"round": k + 1, "landing": landing, "noop": noop})
    return {"name": f"{topics}x{partitions}", "topics": topics, "partitions": partitions, "records": records,
            "rounds": entries}  # fmt: skip


def results(**parts):
    base = {
        "bench": "landing",
        "started": "2026-12-02T10:00:00+00:00",
        "host": {"cpus": 2, "load_at_start": [2.0, 2.0, 2.0]},
        "settings": {"records": 5_000_000, "scale_records": 2_000_000, "quick": False},
        "complete": True,
    }
    return {**base, **parts}


def five_cp_rounds():
    rates = [(1_900_000, 1_500_000), (2_000_000, 1_300_000), (1_800_000, 1_400_000), (2_200_000, 1_200_000),
             (2_100_000, 1_450_000)]  # fmt: skip
    return {"rounds": [cp_round(k + 1, cp, land) for k, (cp, land) in enumerate(rates)]}


def matrix():
    # fixed cost = 10 s + 0.5 s per topic; the no-op 0.3 s + 0.05 s per topic.
    return {
        "configurations": [
            scale_config(t, p, 10 + 0.5 * t, 0.3 + 0.05 * t, 1_000_000 / (1 + 0.01 * t))
            for t, p in ((1, 1), (1, 4), (5, 1), (5, 4), (20, 1), (20, 4))
        ]
    }


def test_the_ratio_to_consumer_performance_is_of_the_medians_and_per_round():
    summary = report.summarize_landing(results(consumer_perf=five_cp_rounds()))
    cp = summary["consumer_perf"]
    assert cp["consumer_perf_records_per_s"] == {
        "min": 1_800_000,
        "median": 2_000_000,
        "max": 2_200_000,
        "n": 5,
    }
    assert cp["landing_records_per_s"]["median"] == pytest.approx(1_400_000, rel=1e-3)  # ms clock
    assert cp["ratio_of_medians"] == pytest.approx(0.7, rel=1e-3)
    assert cp["ratios"] == [0.789, 0.65, 0.778, 0.545, 0.69]
    assert cp["ratio"]["min"] == 0.545 and cp["ratio"]["max"] == 0.789
    assert cp["landing_fixed_s"]["median"] == pytest.approx(10.0)
    assert cp["rounds"] == 5 and cp["failed_rounds"] == 0
    assert summary["goals"]["landing_ratio_at_least_0_7"] is True
    assert summary["goals"]["airflow_noop_at_most_5s"] is None  # not measured
    assert summary["goals"]["no_failed_round"] is True


def test_a_failed_round_is_left_out_of_the_spreads_and_counted():
    part = five_cp_rounds()
    part["rounds"][1] = cp_round(2, 2_000_000, 100, error="landed 10 records of 5,000,000")
    part["rounds"][2]["landing"]["records_per_s"] = None  # a missing value: not a zero
    summary = report.summarize_landing(results(consumer_perf=part))
    cp = summary["consumer_perf"]
    assert cp["failed_rounds"] == 1 and cp["rounds"] == 5
    assert cp["landing_records_per_s"]["n"] == 3
    assert cp["landing_records_per_s"]["min"] == pytest.approx(1_200_000, rel=1e-3)
    assert cp["landing_wall_s"]["n"] == 4  # the round without a rate still has its wall
    assert cp["consumer_perf_records_per_s"]["n"] == 5  # ConsumerPerformance's figure of that round stays
    assert cp["ratios"][1] is None and cp["ratio"]["n"] == 4
    assert summary["goals"]["no_failed_round"] is False


def test_a_failed_noop_run_fails_its_round_but_keeps_the_spark_runs_figures():
    part = matrix()
    entry = part["configurations"][0]["rounds"][0]
    entry["noop"] = {"wall_s": 0.9, "status": "failed", "spark": False, "topics": 1, "noop_topics": 0,
                     "error": "no-op run failed: t: TopicResetError"}  # fmt: skip
    entry["error"] = entry["noop"]["error"]
    summary = report.summarize_landing(results(scale=part))
    c = summary["scale"]["1x1"]
    assert c["failed_rounds"] == 1 and c["records_per_s"]["n"] == 3 and c["noop_s"]["n"] == 2
    assert c["noop_without_jvm"] is True  # of the no-op runs that ran
    assert summary["goals"]["no_failed_round"] is False


def test_scale_summaries_and_how_the_fixed_cost_grows():
    summary = report.summarize_landing(results(scale=matrix()))
    scale = summary["scale"]
    assert list(scale) == ["1x1", "1x4", "5x1", "5x4", "20x1", "20x4"]
    c = scale["5x4"]
    assert c["topics"] == 5 and c["partitions"] == 4 and c["rounds"] == 3 and c["failed_rounds"] == 0
    assert c["fixed_s"]["median"] == pytest.approx(12.5)
    assert c["fixed_s"]["min"] == pytest.approx(12.3) and c["fixed_s"]["max"] == pytest.approx(12.7)
    assert c["records_per_s"]["median"] == pytest.approx(1_000_000 / 1.05, abs=1)
    assert c["noop_s"]["median"] == pytest.approx(0.55)
    assert c["protocol_s_per_topic"]["median"] == pytest.approx(1.0 / 5)
    assert c["noop_without_jvm"] is True
    growth = summary["growth"]
    fixed = growth["fixed_s"]["per_topic"]
    assert fixed["slope"] == pytest.approx(0.5) and fixed["intercept"] == pytest.approx(10.0)
    assert fixed["r2"] == pytest.approx(1.0) and fixed["n"] == 6
    assert growth["noop_s"]["per_topic"]["slope"] == pytest.approx(0.05)
    assert growth["records_per_s"]["per_topic"]["slope"] < 0
    assert growth["records_per_s_relative"]["1x1"] == 1.0
    assert growth["records_per_s_relative"]["20x4"] == pytest.approx(1.01 / 1.2, abs=1e-3)
    assert summary["goals"]["noop_without_jvm"] is True


def test_a_noop_run_that_started_spark_fails_its_goal():
    part = matrix()
    part["configurations"][2]["rounds"][0]["noop"]["spark"] = True
    summary = report.summarize_landing(results(scale=part))
    assert summary["scale"]["5x1"]["noop_without_jvm"] is False
    assert summary["goals"]["noop_without_jvm"] is False


def test_fit_line_needs_two_distinct_xs_and_skips_missing_values():
    assert report.fit_line([1, 1, 1], [2.0, 3.0, 4.0]) is None
    assert report.fit_line([1, 5], [2.0, None]) is None
    fit = report.fit_line([1, 5, 20, 40], [3.0, 5.0, None, 22.5])
    assert fit["slope"] == pytest.approx(0.5) and fit["intercept"] == pytest.approx(2.5) and fit["n"] == 3
    noisy = report.fit_line([1, 2, 3, 4], [1.0, 3.0, 2.0, 4.0])
    assert 0 < noisy["r2"] < 1


def test_airflow_noop_runs_and_their_goal():
    runs = [
        {"state": "success", "land_task_s": 1.2, "land_start_to_report_end_s": 4.1},
        {"state": "success", "land_task_s": 1.0, "land_start_to_report_end_s": 3.9},
        {"state": "failed", "land_task_s": 0.5, "land_start_to_report_end_s": None},
    ]
    summary = report.summarize_landing(results(airflow_noop={"runs": runs}))
    airflow = summary["airflow_noop"]
    assert airflow["land_start_to_report_end_s"] == {"min": 3.9, "median": 4.0, "max": 4.1, "n": 2}
    assert airflow["runs"] == 3 and airflow["failed_runs"] == 1
    assert summary["goals"]["airflow_noop_at_most_5s"] is True
    assert summary["goals"]["no_failed_round"] is False


def test_nothing_measured_yet_is_a_summary_of_unknowns():
    summary = report.summarize_landing(results())
    assert set(summary) == {"goals"}
    assert summary["goals"] == {
        "landing_ratio_at_least_0_7": None,
        "airflow_noop_at_most_5s": None,
        "noop_without_jvm": None,
        "no_failed_round": True,
    }


# ---- the chart and the results file -----------------------------------------------------------


def test_chart_is_a_png_with_its_three_panels(tmp_path):
    summary = report.summarize_landing(results(consumer_perf=five_cp_rounds(), scale=matrix()))
    path = tmp_path / "landing.png"
    report.plot_landing(summary, path, "title")
    with Image.open(path) as img:
        assert img.format == "PNG" and img.size == (1600, 480)
        colors = {c for _, c in img.convert("RGB").getcolors(maxcolors=1 << 20)}
        assert (0xE2, 0x5A, 0x1C) in colors  # the landing's bars
        assert (0x3B, 0x75, 0xAF) in colors  # the no-op runs' bars


@pytest.mark.parametrize(
    "parts",
    [{}, {"consumer_perf": five_cp_rounds()}, {"scale": matrix()}, {"airflow_noop": {"runs": []}}],
    ids=["nothing", "part 1 only", "part 2 only", "no airflow run"],
)
def test_chart_copes_with_parts_not_measured(tmp_path, parts):
    path = tmp_path / "landing.png"
    report.plot_landing(report.summarize_landing(results(**parts)), path, "title")
    assert path.stat().st_size > 10_000


def test_the_landing_chart_is_drawn_again_from_a_results_file(tmp_path):
    data = results(consumer_perf=five_cp_rounds(), scale=matrix())
    path = tmp_path / "landing.json"
    report.write_json(path, data)
    assert report.main([str(path)]) == 0
    written = json.loads(path.read_text())
    assert written["summary"]["consumer_perf"]["ratio_of_medians"] == pytest.approx(0.7, rel=1e-3)
    assert written["summary"]["growth"]["fixed_s"]["per_topic"]["slope"] == pytest.approx(0.5)
    assert (tmp_path / "landing.png").stat().st_size > 10_000


def test_a_results_file_of_an_unknown_bench_is_refused(tmp_path):
    path = tmp_path / "x.json"
    report.write_json(path, {"bench": "nope"})
    with pytest.raises(SystemExit):
        report.main([str(path)])


def test_the_title_names_the_parts_and_an_interrupted_run():
    data = results(consumer_perf=five_cp_rounds(), scale=matrix())
    title = report.landing_title(data)
    assert "5 round(s) of 5,000,000 records" in title and "6 configuration(s) of 2,000,000" in title
    assert title.endswith("2 cores, 2026-12-02")
    data.update(complete=False, settings={**data["settings"], "quick": True})
    assert report.landing_title(data).endswith(", interrupted, 2 cores, 2026-12-02 (--quick)")
    assert report.landing_title(results()).startswith("landing job: nothing measured, 2 cores")
    only_airflow = results(airflow_noop={"runs": [{"state": "success"}] * 3})
    assert report.landing_title(only_airflow).startswith("landing job: 3 no-op run(s) through Airflow, ")


def test_summary_table_shows_ratio_configurations_and_growth():
    summary = report.summarize_landing(results(consumer_perf=five_cp_rounds(), scale=matrix()))
    lines = summary_table(summary)
    assert "| ratio of the medians (per round) | 0.70 (0.79, 0.65, 0.78, 0.55, 0.69) |" in lines
    assert any(line.startswith("| 5x4 | 2,000,000 | 952,381 (") for line in lines)
    assert (
        "fixed cost of a Spark run: 10.000 s + 0.500 s per topic (least squares over 6 medians, r² 1.00)"
        in lines
    )
    assert lines[-1].startswith("goals: landing_ratio_at_least_0_7 True")


# ---- the bench's own parsing --------------------------------------------------------------------

CONSUMER_PERF_OUTPUT = """\
WARNING: some JVM warning
start.time, end.time, data.consumed.in.MB, MB.sec, data.consumed.in.nMsg, nMsg.sec, rebalance.time.ms, fetch.time.ms, fetch.MB.sec, fetch.nMsg.sec
2026-12-02 10:00:00:000, 2026-12-02 10:00:06:000, 476.8372, 79.4729, 5000000, 833333.3333, 3500, 2500, 190.7349, 2000000.0000
"""


def test_consumer_performance_rates_are_its_own_columns():
    stats = parse_consumer_perf(CONSUMER_PERF_OUTPUT)
    figures = consumer_perf_figures(8.25, stats)
    assert figures == {
        "wall_s": 8.25,
        "records": 5_000_000,
        "fetch_records_per_s": 2_000_000.0,  # without the group join
        "records_per_s": 833333.3333,
        "rebalance_ms": 3500,
        "fetch_ms": 2500,
    }
    assert consumer_perf_figures(1.0, {"fetch.nMsg.sec": "NaN"})["fetch_records_per_s"] is None


def test_the_matrix_is_topics_x_partitions():
    assert parse_matrix("1x1, 5X4,,20x1") == [(1, 1), (5, 4), (20, 1)]
    assert parse_matrix("") == []
    for bad in ("5", "0x1", "1x0", "ax2", "1x2x3"):
        with pytest.raises(ValueError):
            parse_matrix(bad)


@pytest.mark.parametrize(("total", "topics", "partitions"), [(2_000_000, 20, 4), (20_000, 3, 4), (7, 5, 2)])
def test_records_are_spread_evenly_over_all_topic_partitions(total, topics, partitions):
    counts = records_per_topic(total, topics, partitions)
    assert len(counts) == topics and sum(counts) == total
    # produce() deals a topic's records round robin over its partitions
    per_partition = [
        c // partitions + (1 if p < c % partitions else 0) for c in counts for p in range(partitions)
    ]
    assert max(per_partition) - min(per_partition) <= 1


def test_quick_mode_is_small_and_written_outside_the_repo():
    args = parse_args(["--quick"])
    assert args.records <= 50_000 and args.repeat == 1 and args.matrix == [(2, 2)] and args.scale_repeat == 1
    assert args.airflow == 0
    assert args.out is None  # main() makes a temp folder: the repo's figures stay
    defaults = parse_args([])
    assert defaults.out.parts[-2:] == ("bench", "results")
    assert defaults.matrix == [(1, 1), (1, 4), (5, 1), (5, 4), (20, 1), (20, 4)]
    assert (defaults.records, defaults.repeat, defaults.scale_records, defaults.scale_repeat, defaults.airflow) == (
        5_000_000, 5, 2_000_000, 3, 5,
    )  # fmt: skip
    assert parse_args(["--matrix", "", "--repeat", "0"]).matrix == []
    for bad in (["--matrix", "2y2"], ["--repeat", "-1"], ["--partitions", "0"]):
        with pytest.raises(SystemExit):
            parse_args(bad)


def test_a_noop_runs_figures():
    topics = [topic_report(n, 0, None, T0, 0.3, status="noop") for n in ("a", "b")]
    figures = noop_figures(0.9, run_report(*topics, startup=None, spark=False))
    assert figures == {"wall_s": 0.9, "status": "ok", "spark": False, "topics": 2, "noop_topics": 2,
                       "in_topics_s": 0.6}  # fmt: skip
    bad = {"topic": "a", "status": "error", "error": "TopicResetError: ..."}
    failed = noop_figures(1.0, run_report(bad, status="failed", spark=False))
    assert failed["error"] == "no-op run failed: a: TopicResetError: ..."


def test_airflow_task_seconds_with_a_task_that_did_not_run():
    tis = {
        "land": {"start_date": "2026-12-02T10:00:00.500000Z", "end_date": "2026-12-02T10:00:02Z"},
        "report": {"start_date": "2026-12-02T10:00:03Z", "end_date": "2026-12-02T10:00:04.250000Z"},
    }
    assert airflow_task_seconds(tis) == {"land_task_s": 1.5, "land_start_to_report_end_s": 3.75}
    tis["report"] = {"start_date": None, "end_date": None}
    assert airflow_task_seconds(tis) == {"land_task_s": 1.5, "land_start_to_report_end_s": None}


def test_an_airflow_part_whose_topic_never_landed_is_a_failure():
    summary = report.summarize_landing(results(airflow_noop={"runs": [], "error": "landing run failed"}))
    assert "airflow_noop" not in summary and summary["goals"]["no_failed_round"] is False
