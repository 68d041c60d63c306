"""The memory bench's figures: which part of the stack a process is, the summary and its goal,
the results file and the chart, the table and the arguments (no service: synthetic samples)."""

from __future__ import annotations

import json
import urllib.error

import pytest
from PIL import Image

from bench import report
from bench.memory_bench import memory_table, parse_args

SCHED = "airflow-scheduler"


def part(processes, rss, pss):
    return {"processes": processes, "rss_mib": rss, "pss_mib": pss}


def results(after, peak, complete=True, stack_rss=None, peak_stack_rss=None, **settings):
    return {
        "after_stack_rss_mib": stack_rss,
        "peak_stack_rss_mib": peak_stack_rss,
        "bench": "memory",
        "started": "2026-12-01T17:00:00+00:00",
        "host": {"cpus": 2, "load_at_start": 1.0, "mem_total_mib": 24000},
        "settings": {"rates": [1000, 10000], "seconds": 60.0, "landings": 2, "batch": True, **settings},
        "complete": complete,
        "after": after,
        "peak": peak,
    }


def test_the_scheduler_tree_is_split_by_what_each_process_runs():
    spark_submit = ["/usr/lib/jvm/bin/java", "-cp", "x", "org.apache.spark.deploy.SparkSubmit"]
    assert (
        report.memory_part(SCHED, [*spark_submit, "--name", "wordcount_stream", "a.py"])
        == report.STREAMING_JOB
    )
    assert report.memory_part(SCHED, ["/v/bin/python", "/r/spark_jobs/wordcount_stream.py", "k:9092"]) == (
        report.STREAMING_JOB
    )
    assert report.memory_part(SCHED, [*spark_submit, "--name", "kafka_to_hdfs_landing"]) == report.SPARK_JOBS
    assert (
        report.memory_part(SCHED, ["/v/bin/python", "/r/spark_jobs/batch_wordcount.py"]) == report.SPARK_JOBS
    )
    # setproctitle leaves one argument, padded with spaces
    assert (
        report.memory_part(SCHED, ["airflow worker -- LocalExecutor: <idle>      "])
        == report.EXECUTOR_WORKERS
    )
    assert report.memory_part(SCHED, ["airflow worker -- 01a23275-c582-7987   "]) == report.TASK_PROCESSES
    assert report.memory_part(SCHED, ["/v/bin/python", "/v/bin/airflow", "scheduler"]) == SCHED
    # other services are themselves, whatever their processes run
    assert report.memory_part("kafka", ["java", "kafka.Kafka", "wordcount_stream"]) == "kafka"
    assert report.memory_part("postgres", ["postgres: airflow airflow 127.0.0.1 idle"]) == "postgres"


def test_summary_totals_the_settled_sample_and_judges_the_goal_on_its_rss():
    after = {"kafka": part(1, 300.0, 280.0), report.STREAMING_JOB: part(2, 700.0, 650.0)}
    peak = {"kafka": part(1, 320.0, 300.0), report.STREAMING_JOB: part(2, 760.0, 700.0),
            report.SPARK_JOBS: part(2, 600.0, 560.0)}  # fmt: skip
    summary = report.summarize_memory(results(after, peak, stack_rss=900.0, peak_stack_rss=1500.0))
    assert [p["part"] for p in summary["parts"]] == ["kafka", report.STREAMING_JOB, report.SPARK_JOBS]
    gone = summary["parts"][2]
    assert gone["after"] is None and gone["peak_rss_mib"] == 600.0  # only in the peak sample
    assert summary["total"] == {"processes": 3, "rss_mib": 1000.0, "pss_mib": 930.0, "peak_rss_mib": 1680.0,
                                "stack_rss_mib": 900.0, "peak_stack_rss_mib": 1500.0}  # fmt: skip
    assert summary["goal_rss_mib"] == 3072 and summary["goal_met"] is True
    assert summary["goal_on"] == "stack_rss_mib" and summary["summed_rss_within_goal"] is True


def test_goal_judged_on_the_stacks_rss_each_page_once_and_summed_rss_reported_beside():
    forks = {report.EXECUTOR_WORKERS: part(3, 3500.0, 900.0)}  # shared pages counted 3 times
    summary = report.summarize_memory(results(forks, forks, stack_rss=2000.0))
    assert summary["goal_met"] is True and summary["summed_rss_within_goal"] is False
    over = report.summarize_memory(results(forks, forks, stack_rss=3100.0))
    assert over["goal_met"] is False
    # without the frame numbers (not root) the goal falls back on summed RSS, never smaller
    unread = report.summarize_memory(results(forks, forks, stack_rss=None))
    assert unread["goal_on"] == "rss_mib" and unread["goal_met"] is False


def test_goal_missed_above_3_gib_and_unknown_without_a_settled_sample():
    big = {"streaming job": part(2, 3072.5, 3000.0)}
    assert report.summarize_memory(results(big, big))["goal_met"] is False
    at_goal = {"streaming job": part(2, 3072.0, 3000.0)}
    assert report.summarize_memory(results(at_goal, at_goal))["goal_met"] is True
    interrupted = report.summarize_memory(results(None, big, complete=False, stack_rss=10.0))
    assert interrupted["goal_met"] is None and interrupted["total"]["rss_mib"] is None
    assert interrupted["total"]["stack_rss_mib"] is None  # a figure from before the end is not "after"
    assert interrupted["parts"][0]["after"] is None and interrupted["total"]["peak_rss_mib"] == 3072.5


def test_results_file_and_chart_written_and_rebuilt_by_report_main(tmp_path):
    after = {f"service-{i}": part(1, 100.0 + i, 50.0 + i) for i in range(12)}
    data = results(after, after, stack_rss=1000.0, peak_stack_rss=1100.0)
    data["summary"] = report.summarize_memory(data)
    path = tmp_path / "memory.json"
    report.write_json(path, data)
    report.plot_memory(data["summary"], tmp_path / "memory.png", report.memory_title(data))
    with Image.open(tmp_path / "memory.png") as img:
        assert img.format == "PNG" and img.size[0] > 800
    (tmp_path / "memory.png").unlink()
    assert report.main([str(path)]) == 0
    again = json.loads(path.read_text())
    assert again["summary"]["total"]["rss_mib"] == sum(100.0 + i for i in range(12))
    assert (tmp_path / "memory.png").exists()


def test_an_interrupted_run_still_plots(tmp_path):
    data = results(None, {"kafka": part(1, 300.0, 280.0)}, complete=False)
    title = report.memory_title(data)
    assert "interrupted" in title and "1,000, 10,000 lines/s" in title and "a batch run" in title
    summary = report.summarize_memory(data)
    report.plot_memory(summary, tmp_path / "memory.png", title)
    assert (tmp_path / "memory.png").stat().st_size > 0


def test_table_lists_every_part_and_the_verdict():
    after = {"kafka": part(1, 300.0, 280.0)}
    lines = memory_table(report.summarize_memory(results(after, after)))
    assert any(line.startswith("kafka") and "300" in line for line in lines)
    assert lines[-3].startswith("summed after the workload") and "300" in lines[-3]
    assert ": met (judged on summed RSS; summed RSS within it)" in lines[-1]
    missed = memory_table(report.summarize_memory(results({"k": part(1, 4000.0, 1.0)}, {}, stack_rss=3500.0)))
    assert "3,500 MiB after the workload" in missed[-2]
    assert ": MISSED (judged on the stack's RSS; summed RSS over it)" in missed[-1]
    interrupted = memory_table(
        report.summarize_memory(results(None, {"k": part(1, 1.0, 1.0)}, complete=False))
    )
    assert "not judged" in interrupted[-1]


def test_the_stacks_rss_counts_a_page_shared_by_a_fork_once():
    """Real pages of real processes: a child forked after this process touched 64 MiB shares
    them; summed RSS counts them twice, the stack's RSS once."""
    import os
    import signal

    import psutil

    from bench.memory_bench import stack_rss_mib

    block = bytearray(os.urandom(64 * 2**20))  # resident, and private to this process until the fork
    child = os.fork()
    if child == 0:
        signal.pause()
        os._exit(0)
    try:
        pids = [os.getpid(), child]
        summed = sum(psutil.Process(p).memory_info().rss for p in pids) / 2**20
        once = stack_rss_mib(pids)
        if once is None:  # frame numbers hidden (no CAP_SYS_ADMIN): no figure rather than a wrong one
            with open(f"/proc/{os.getpid()}/pagemap", "rb") as pagemap:
                pagemap.seek(id(block) // os.sysconf("SC_PAGE_SIZE") * 8)
                entry = int.from_bytes(pagemap.read(8), "little")
            assert entry & ((1 << 55) - 1) == 0  # ... and they really are hidden
            return
        alone = stack_rss_mib([os.getpid()])
        assert alone >= 64 and once >= alone - 16  # (numpy allocated between the two readings)
        assert once < summed - 60  # the 64 MiB block is counted once, not twice
    finally:
        os.kill(child, signal.SIGKILL)
        os.waitpid(child, 0)
        del block


def test_quick_mode_is_small_and_defaults_are_the_benches_load():
    quick = parse_args(["--quick"])
    assert quick.rates == [1000] and quick.seconds == 5.0 and quick.landings == 1 and not quick.batch
    assert quick.out is None  # a temp folder, made by main()
    full = parse_args([])
    assert full.interval == 5.0
    assert full.rates == [1000, 10000, 50000] and full.landings == 2 and full.batch
    assert full.out.name == "results"


class FakeClient:
    """Airflow's REST API as the bench uses it: a run already exists for the day (409)."""

    def __init__(self, conflict: bool):
        self.conflict, self.posts, self.states = conflict, [], ["queued", "running", "success"]

    def post(self, path, body):
        self.posts.append((path, body))
        if path.endswith("/dagRuns") and self.conflict:
            raise urllib.error.HTTPError(path, 409, "Conflict", {}, None)
        return {"dag_run_id": "manual__x"}

    def runs(self, dag_id, **params):
        assert params == {"logical_date_gte": "2026-11-30T00:00:00+00:00",
                          "logical_date_lte": "2026-11-30T00:00:00+00:00"}  # fmt: skip
        return [{"dag_run_id": "scheduled__2026-12-01T00:00:00+00:00"}]

    def run_state(self, dag_id, run_id):
        return self.states.pop(0)


def test_a_day_is_triggered_with_its_own_interval_or_its_run_cleared(monkeypatch):
    from datetime import datetime, timezone

    from bench import memory_bench

    monkeypatch.setattr(memory_bench.time, "sleep", lambda s: None)
    day = datetime(2026, 11, 30, tzinfo=timezone.utc)
    fresh = FakeClient(conflict=False)
    run = memory_bench.run_dag(fresh, "hdfs_batch_reprocessing", 60, day=day)
    ((path, body),) = fresh.posts
    # a manual run of a daily timetable would otherwise cover the day before its date
    assert body["data_interval_start"] == body["logical_date"] == "2026-11-30T00:00:00+00:00"
    assert body["data_interval_end"] == "2026-12-01T00:00:00+00:00"
    assert run["state"] == "success" and run["run_id"] == "manual__x"

    existing = FakeClient(conflict=True)
    run = memory_bench.run_dag(existing, "hdfs_batch_reprocessing", 60, day=day)
    clear_path, clear = existing.posts[1]
    assert clear_path == "/dags/hdfs_batch_reprocessing/clearTaskInstances"
    assert clear == {"dag_run_id": "scheduled__2026-12-01T00:00:00+00:00", "only_failed": False,
                     "reset_dag_runs": True, "dry_run": False}  # fmt: skip
    assert run["run_id"] == "scheduled__2026-12-01T00:00:00+00:00" and run["state"] == "success"

    undated = FakeClient(conflict=True)  # a conflict without a day is an error, not a re-run
    with pytest.raises(urllib.error.HTTPError):
        memory_bench.run_dag(undated, "kafka_to_hdfs_landing", 60)


def test_samples_taken_at_once_keep_the_highest_as_the_peak(monkeypatch):
    """The sampler's thread and the main thread's last sample can overlap: the peak must still
    be the highest sample, whatever the interleaving (a slow total makes both read the old peak)."""
    import threading
    import time

    from bench import memory_bench

    samples = iter([{"kafka": part(1, 3050.0, 1.0)}, {"kafka": part(1, 3000.0, 1.0)}])
    lock = threading.Lock()

    def fake_sample(cfg):
        with lock:
            return next(samples), []

    def slow_total(parts):
        time.sleep(0.1)
        return report.memory_total(parts)

    monkeypatch.setattr(memory_bench, "sample", fake_sample)
    monkeypatch.setattr(memory_bench, "stack_rss_mib", lambda pids: None)
    monkeypatch.setattr(memory_bench, "memory_total", slow_total)
    sampler = memory_bench.Sampler(cfg=None, interval=60)
    first = threading.Thread(target=sampler.take)
    first.start()
    time.sleep(0.05)
    sampler.take()
    first.join()
    assert sampler.peak["kafka"]["rss_mib"] == 3050.0
    assert [s["rss_mib"] for s in sampler.timeline] == [3050.0, 3000.0]
