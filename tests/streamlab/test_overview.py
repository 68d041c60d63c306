"""The Streamlab page's sections (streamlab/overview.py) over a local folder and a fake Kafka."""

from __future__ import annotations

import json
import os
import random
import threading
import time

import pytest

from streamlab import lake, landing, overview
from streamlab.overview import GroupOffset, PartitionOffsets
from streamlab.topics import TopicSpec


class RootedFileSystem(landing.LocalFileSystem):
    """HDFS paths (/data/...) below a temporary folder; counts reads."""

    def __init__(self, root):
        self.root = str(root)
        self.reads: list[str] = []

    def _p(self, path: str) -> str:
        return self.root + path

    def read(self, path, offset=0, length=None):
        self.reads.append(path)
        return super().read(path, offset, length)

    def write_json(self, path: str, value, mtime_s: float | None = None) -> None:
        full = self._p(path)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "w") as f:
            json.dump(value, f)
        if mtime_s is not None:
            os.utime(full, (mtime_s, mtime_s))


class FakeKafka:
    def __init__(self, offsets, groups=None, stamps=None):
        self._offsets = offsets
        self._groups = groups or {}
        self._stamps = stamps or {}
        self.asked_timestamps: dict = {}

    def offsets(self, topics):
        return {t: self._offsets[t] for t in topics if t in self._offsets}

    def group_offsets(self, group, topics):
        return {t: p for t, p in self._groups.get(group, {}).items() if t in topics}

    def timestamps_at(self, wanted):
        self.asked_timestamps = dict(wanted)
        return {k: self._stamps[k] for k in wanted if k in self._stamps}


def spec(name, land):
    return TopicSpec(
        name=name, partitions=2, replication_factor=1, configs={}, land=land, value_format="text"
    )


def commit_record(topic, seq, ends, run_id="scheduled__x"):
    return {
        "seq": seq,
        "topic": topic,
        "run_id": run_id,
        "committed_at_ms": 1000,
        "partitions": {str(p): {"start": 0, "end": e} for p, e in ends.items()},
    }


@pytest.fixture
def fs(tmp_path):
    return RootedFileSystem(tmp_path)


def test_topics_show_offsets_landing_lag_oldest_unlanded_age_and_streaming_lag(fs):
    paths = lake.TopicPaths("in")
    fs.write_json(paths.record(1, landing.COMMIT), commit_record("in", 1, {0: 5, 1: 0}))
    fs.write_json(paths.record(2, landing.COMMIT), commit_record("in", 2, {0: 8, 1: 3}, run_id="manual__2"))
    kafka = FakeKafka(
        offsets={
            "in": {0: PartitionOffsets(0, 10), 1: PartitionOffsets(5, 5)},  # p1: retention went past 3
            "counts": {0: PartitionOffsets(0, 7)},
        },
        groups={"wc": {"in": {0: GroupOffset(9), 1: GroupOffset(5)}}},
        stamps={("in", 0): 40_000},
    )
    rows = overview.topics_section(
        [spec("in", True), spec("counts", False), spec("gone", True)],
        kafka,
        fs,
        {"input_topics": "in", "group_id": "wc", "output_topic": "counts"},
        now_ms=100_000,
    )
    by = {r["topic"]: r for r in rows}
    src = by["in"]
    assert src["landing_seq"] == 2 and src["landing_run"] == "/dags/kafka_to_hdfs_landing/runs/manual__2"
    assert [(p["landed"], p["landing_lag"], p["oldest_unlanded_age_s"]) for p in src["partitions"]] == [
        (8, 2, 60.0),
        (3, 0, None),
    ]
    assert kafka.asked_timestamps == {("in", 0): 8}  # only where records wait, at the committed end
    assert [(p["streamed"], p["streaming_lag"]) for p in src["partitions"]] == [(9, 1), (5, 0)]
    assert (src["latest"], src["landing_lag"], src["streaming_lag"]) == (15, 2, 1)
    assert by["counts"]["partitions"] == [{"partition": 0, "earliest": 0, "latest": 7}]
    assert by["counts"]["landing_lag"] is None
    assert by["gone"]["exists"] is False and by["gone"]["partitions"] == []


def test_a_topic_never_landed_counts_everything_kafka_holds_as_lag(fs):
    kafka = FakeKafka(offsets={"in": {0: PartitionOffsets(2, 6)}}, stamps={("in", 0): 1_000})
    [row] = overview.topics_section(
        [spec("in", True)], kafka, fs, {"input_topics": "", "group_id": "wc", "output_topic": "x"}, 3_000
    )
    assert row["landing_seq"] is None
    assert row["partitions"][0] | {} == {
        "partition": 0,
        "earliest": 2,
        "latest": 6,
        "landed": None,
        "landing_lag": 4,
        "oldest_unlanded_age_s": 2.0,
    }
    assert kafka.asked_timestamps == {("in", 0): 2}


def report(run_id, records, status="ok", topic="in"):
    t = {"topic": topic, "status": status, "totals": {"records": records, "bytes": 10 * records, "files": 1}}
    if status == "error":
        t["error"] = "boom"
    return {"run_id": run_id, "status": "ok" if status == "ok" else "failed", "topics": [t]}


def test_landing_history_reads_only_the_newest_reports_once_and_links_airflow_runs(fs):
    base = time.time() - 10_000
    order = list(range(40))
    random.Random(3).shuffle(order)  # written in any order: the modification time decides
    for i in order:
        fs.write_json(f"{lake.REPORTS_ROOT}/r{i:03d}.json", report(f"run-{i}", i), mtime_s=base + i)
    fs.write_json(f"{lake.REPORTS_ROOT}/r039.json", report("run-39", 39, status="error"), mtime_s=base + 39)
    cache = overview.JsonCache()
    asked = []

    def known(run_ids):
        asked.append(list(run_ids))
        return {"run-39"}

    section = overview.landing_section(fs, cache, [{"run_id": "run-40", "state": "running"}], known, limit=30)
    assert section["reports"] == 40
    assert [h["run_id"] for h in section["history"]] == [f"run-{i}" for i in range(10, 40)]
    last = section["history"][-1]
    assert (last["status"], last["records"], last["bytes"], last["files"], last["quarantined"]) == (
        "failed",
        39,
        390,
        1,
        0,
    )
    assert last["errors"] == ["in: boom"] and last["link"] == "/dags/kafka_to_hdfs_landing/runs/run-39"
    assert section["history"][0]["link"] is None  # a run by hand: no Airflow page
    assert section["last_run"]["state"] == "running"
    assert len(fs.reads) == 30
    overview.landing_section(fs, cache, [], known, limit=30)
    assert len(fs.reads) == 30  # unchanged files are not read again


def test_a_report_rewritten_by_a_retry_is_read_again(fs):
    path = f"{lake.REPORTS_ROOT}/r.json"
    fs.write_json(path, report("r", 1, status="error"), mtime_s=1000)
    cache = overview.JsonCache()
    assert overview.landing_section(fs, cache, [])["history"][0]["status"] == "failed"
    fs.write_json(path, report("r", 12), mtime_s=2000)
    assert overview.landing_section(fs, cache, [])["history"][0]["status"] == "ok"


@pytest.mark.parametrize(
    ("paused", "run", "task", "progress", "task_age", "state"),
    [
        (True, "running", "running", 5, 600, "stopped"),
        (False, "failed", None, None, None, "stopped"),
        (False, None, None, None, None, "stopped"),
        (False, "running", "running", 5, 600, "running"),
        (False, "running", "running", 500, 600, "restarting"),  # alive task, silent query
        (False, "running", "running", None, 30, "restarting"),  # just started
        (False, "running", "up_for_retry", 50, 600, "restarting"),
        (False, "queued", None, None, None, "restarting"),
    ],
)
def test_streaming_state(paused, run, task, progress, task_age, state):
    assert overview.streaming_state(paused, run, task, progress, task_age)[0] == state


def test_streaming_progress_comes_from_the_newest_group_commit_metadata():
    meta_old = {"batch": 4, "ts": 10_000, "in_rps": 1.0, "proc_rps": 2.0, "batch_ms": 300, "rows": 3}
    meta_new = {"batch": 7, "ts": 90_000, "in_rps": 5.5, "proc_rps": 6.5, "batch_ms": 800, "rows": 9}
    kafka = FakeKafka({}, groups={"g2": {"a": {0: GroupOffset(3, meta_old), 1: GroupOffset(4, meta_new)}}})
    kafka._groups["g2"]["a"][2] = GroupOffset(5, {"ts": None, "note": "another client's metadata"})
    runs = [{"run_id": "r1", "state": "running", "conf": {"group_id": "g2", "input_topics": "a"}}]
    s = overview.streaming_section(
        kafka, runs, False, {"state": "running", "start_ms": 0}, [("x", 3)], 100_000
    )
    assert (s["group_id"], s["input_topics"], s["output_topic"]) == ("g2", ["a"], "wordcounts")
    assert (s["batch"], s["input_rows_per_s"], s["processed_rows_per_s"], s["batch_duration_ms"]) == (
        7,
        5.5,
        6.5,
        800,
    )
    assert s["since_last_progress_s"] == 10.0 and s["state"] == "running"
    assert s["top_words"] == [{"word": "x", "count": 3}]
    assert s["run"]["link"] == "/dags/streaming_wordcount/runs/r1"
    assert "conf" not in s["run"]  # user input, never shown


def test_top_words_kept_bounded_are_exact_for_growing_totals():
    rng = random.Random(7)
    words = [f"w{i}" for i in range(3000)]
    weights = [1 / (i + 1) for i in range(3000)]
    totals: dict[str, int] = {}
    top = overview.TopWords(keep=50)
    for _ in range(40):
        batch = []
        for w in rng.choices(words, weights, k=500):
            totals[w] = totals.get(w, 0) + 1
            batch.append((w.encode(), str(totals[w]).encode()))
        top.update(batch + [(None, b"1"), (b"bad", b"not a number")])
        assert len(top.counts) <= 100
    expected = sorted(totals.items(), key=lambda kv: (-kv[1], kv[0]))[:10]
    assert top.top(10) == expected


def test_batch_days_show_success_summary_and_run_state(fs):
    fs.write_json(
        f"{lake.WORDCOUNT_ROOT}/dt=2025-01-02/_SUCCESS",
        {"records": 4, "tokens": 9, "distinct_words": 5, "run_id": "scheduled__2025-01-03"},
    )
    os.makedirs(fs._p(f"{lake.WORDCOUNT_ROOT}/dt=2025-01-01"))  # no _SUCCESS
    os.makedirs(fs._p(f"{lake.WORDCOUNT_ROOT}/_tmp-2025-01-01-a1"))  # an attempt's folder: not a day
    runs = [
        {
            "run_id": "backfill__2025-01-04",
            "state": "running",
            "data_interval_start": "2025-01-03T00:00:00+00:00",
        },
        {
            "run_id": "backfill__2025-01-03",
            "state": "running",
            "data_interval_start": "2025-01-02T00:00:00+00:00",
        },
        {
            "run_id": "scheduled__2025-01-02",
            "state": "failed",
            "data_interval_start": "2025-01-01T00:00:00+00:00",
        },
        {
            "run_id": "scheduled__2024-12-31",
            "state": "success",
            "data_interval_start": "2024-12-31T00:00:00+00:00",
        },
    ]
    days = {d["day"]: d for d in overview.batch_section(fs, overview.JsonCache(), runs)}
    assert list(days) == ["2025-01-03", "2025-01-02", "2025-01-01", "2024-12-31"]
    assert days["2025-01-02"]["status"] == "reprocessing"
    assert (days["2025-01-02"]["records"], days["2025-01-02"]["tokens"], days["2025-01-02"]["words"]) == (
        4,
        9,
        5,
    )
    assert days["2025-01-02"]["link"] == "/dags/hdfs_batch_reprocessing/runs/backfill__2025-01-03"
    assert days["2025-01-03"]["status"] == "running"
    assert days["2025-01-01"]["status"] == "failed"
    assert days["2024-12-31"]["status"] == "missing"


def test_snapshot_answers_from_the_last_value_while_it_refreshes_in_the_background():
    from streamlab.ui import Snapshot

    calls = []
    gate = threading.Event()

    def compute():
        calls.append(1)
        if len(calls) == 2:
            gate.wait(10)
        if len(calls) >= 3:
            raise OSError("kafka down")
        return len(calls)

    snap = Snapshot(compute, max_age=0.0)
    assert snap.get()["data"] == 1  # the first request waits
    started = time.monotonic()
    assert snap.get()["data"] == 1  # stale: answered at once, refresh 2 runs (blocked) behind it
    assert time.monotonic() - started < 5
    gate.set()
    deadline = time.monotonic() + 10
    while snap.get()["data"] != 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    while not snap.get()["error"] and time.monotonic() < deadline:
        time.sleep(0.01)
    answer = snap.get()
    assert answer["error"] == "OSError: kafka down" and answer["data"] == 2  # the last good value stays


def test_run_links_are_escaped():
    assert overview.run_link("d", "manual__2025-01-01T00:00:00+00:00") == (
        "/dags/d/runs/manual__2025-01-01T00%3A00%3A00%2B00%3A00"
    )
    assert overview.run_link("d", None) is None


def test_snapshot_says_loading_while_the_first_refresh_runs_and_gives_up_on_a_hung_one():
    from streamlab.ui import Snapshot

    release = threading.Event()
    calls = []

    def compute():
        calls.append(1)
        if len(calls) == 1:
            release.wait(10)  # the first refresh hangs
            return "late"
        return "fresh"

    snap = Snapshot(compute, max_age=0.0, hung_after=0.2)
    first = threading.Thread(target=snap.get)
    first.start()
    deadline = time.monotonic() + 5
    while not calls and time.monotonic() < deadline:
        time.sleep(0.01)
    answer = snap.get()
    assert answer == {"data": None, "error": None, "age_s": None, "loading": True}
    time.sleep(0.3)
    snap.get()  # past hung_after: another refresh starts instead of waiting on the first
    while snap.get()["data"] != "fresh" and time.monotonic() < deadline:
        time.sleep(0.01)
    assert snap.get()["data"] == "fresh" and snap.get()["loading"] is False
    release.set()
    first.join(5)
