"""The landing protocol without Spark or a cluster: a local folder with HDFS semantics, a fake
Kafka, a writer that stages Parquet files with pyarrow, and a file system that crashes before
its k-th change and checks, after EVERY change, what a plain reader of the folder would see.
"""

from __future__ import annotations

import io
import json
import posixpath
import threading
import uuid
from collections import Counter

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from streamlab import lake, landing, parquet_footer
from streamlab.lake import TopicPaths
from streamlab.landing import (
    ConcurrentRunError,
    DataLossError,
    LandingOptions,
    LocalFileSystem,
    WriteResult,
)

HOUR = 3_600_000
T0 = 1_735_689_600_000  # 2025-01-01T00:00:00Z
TOPIC = "t1"


class Crash(Exception):
    """kill -9 of the landing job, between two file system operations."""


class CrashingFS:
    """Delegates to a real file system; raises Crash before the `crash_at`-th change and calls
    `after_change` after every change that happened."""

    MUTATING = {"create", "rename", "delete", "mkdirs", "concat"}

    def __init__(self, inner, crash_at=None, after_change=None):
        self.inner = inner
        self.crash_at = crash_at
        self.after_change = after_change
        self.changes = 0
        self.can_concat = inner.can_concat

    def __getattr__(self, name):
        attr = getattr(self.inner, name)
        if name not in self.MUTATING:
            return attr

        def op(*args, **kwargs):
            if self.crash_at is not None and self.changes == self.crash_at:
                raise Crash(f"crash before change #{self.changes}: {name}{args}")
            result = attr(*args, **kwargs)
            self.changes += 1
            if self.after_change:
                self.after_change()
            return result

        return op


class FakeKafka:
    """partition -> list of (offset, timestamp ms, key, value); `earliest` simulates retention."""

    def __init__(self, partitions=2):
        self.records = {p: [] for p in range(partitions)}
        self.earliest = dict.fromkeys(self.records, 0)
        self.id = "topic-id-1"

    def topic_id(self, topic):
        return self.id

    def produce(self, partition, value, ts):
        recs = self.records[partition]
        recs.append((len(recs), ts, f"k{len(recs)}".encode(), value))

    def available(self, topic):
        return {p: (self.earliest[p], len(r)) for p, r in self.records.items()}

    def all_offsets(self):
        return {(p, o) for p, recs in self.records.items() for (o, *_r) in recs}


def _table(rows, text: bool, quarantine: bool):
    cols = {
        "topic": pa.array([TOPIC] * len(rows), pa.string()),
        "partition": pa.array([r[0] for r in rows], pa.int32()),
        "offset": pa.array([r[1] for r in rows], pa.int64()),
        "timestamp": pa.array([r[2] * 1000 for r in rows], pa.timestamp("us", tz="UTC")),
        "timestamp_type": pa.array([0] * len(rows), pa.int32()),
        "key": pa.array([r[3] for r in rows], pa.binary()),
    }
    if quarantine or not text:
        cols["value"] = pa.array([r[4] for r in rows], pa.binary())
    else:
        cols["value"] = pa.array([r[4].decode() for r in rows], pa.string())
    if quarantine:
        cols["reason"] = pa.array(["invalid UTF-8"] * len(rows), pa.string())
    return pa.table(cols)


class FakeWriter:
    """Stages what Spark would: Parquet files of one partition each, per hour, split every
    `split` records, with random names (like Spark's part-<uuid>), through the file system."""

    def __init__(self, fs, kafka, split=3, during_write=None):
        self.fs, self.kafka, self.split, self.during_write = fs, kafka, split, during_write

    def write(self, plan, staging_dir, records_per_file):
        if self.during_write:
            self.during_write()
        text = plan["value_format"] == "text"
        total = bad = 0
        read_gaps = []
        for p_str, end in plan["end"].items():
            p, start = int(p_str), plan["start"][p_str]
            if self.kafka.earliest[p] > start:  # deleted by Kafka after the plan
                if not plan["accept_data_loss"]:
                    raise landing.LandingError(f"offsets {start}.. of partition {p} are gone")
                read_gaps.append({"partition": p, "start": start, "end": min(end, self.kafka.earliest[p])})
                start = min(end, self.kafka.earliest[p])
            rows = [(p, o, ts, k, v) for (o, ts, k, v) in self.kafka.records[p] if start <= o < end]
            total += len(rows)
            groups: dict[tuple[str, str], list] = {}
            for r in rows:
                ok = True
                if text:
                    try:
                        r[4].decode()
                    except UnicodeDecodeError:
                        ok = False
                kind = landing.RAW if ok else landing.QUARANTINE
                bad += not ok
                # raw files in `h=<epoch hour>` folders (as Spark writes them), quarantine in dt=/hr=
                hdir = f"h={r[2] // HOUR}" if ok else lake.hour_dir(r[2])
                groups.setdefault((kind, hdir), []).append(r)
            for (kind, hdir), items in sorted(groups.items()):
                for i in range(0, len(items), self.split):
                    buf = io.BytesIO()
                    pq.write_table(_table(items[i : i + self.split], text, kind == landing.QUARANTINE), buf)
                    path = posixpath.join(staging_dir, kind, hdir, f"part-{uuid.uuid4().hex}.parquet")
                    self.fs.mkdirs(posixpath.dirname(path))
                    self.fs.create(path, buf.getvalue())
        self.fs.create(posixpath.join(staging_dir, "_SUCCESS"), b"")
        return WriteResult(records=total, quarantined=bad, read_gaps=read_gaps)


def plain_read(fs, paths):
    """(partition, offset) of every row a plain reader of raw + quarantine sees, with counts."""
    seen = Counter()
    for root in (paths.root, paths.quarantine):
        for st in landing.walk_files(fs, root):
            table = pq.read_table(io.BytesIO(fs.read(st.path)))  # a partial file would fail here
            seen.update(
                zip(table.column("partition").to_pylist(), table.column("offset").to_pylist(), strict=True)
            )
    return seen


def check_exactly_once(fs, paths, kafka, complete=False, lost=frozenset()):
    """No duplicate, nothing unexpected, and everything up to the last commit's end offsets."""
    seen = plain_read(fs, paths)
    dups = [k for k, c in seen.items() if c > 1]
    assert not dups, f"duplicates visible: {dups[:5]}"
    assert set(seen) <= kafka.all_offsets()
    commit = landing.latest_commit(fs, paths)
    if commit:
        must = {(p, o) for (p, o) in kafka.all_offsets() - lost if o < commit["end"].get(str(p), 0)}
        missing = must - set(seen)
        assert not missing, f"committed records not visible: {sorted(missing)[:5]}"
    if complete:
        assert set(seen) == kafka.all_offsets() - lost
    return seen


def _checker(fs, paths, kafka):
    return lambda: check_exactly_once(fs, paths, kafka)


@pytest.fixture
def setup(tmp_path):
    fs = LocalFileSystem()
    paths = TopicPaths(TOPIC, raw_root=str(tmp_path / "raw"), quarantine_root=str(tmp_path / "quarantine"))
    kafka = FakeKafka(partitions=2)
    return fs, paths, kafka


def produce_batch(kafka, n, t, bad_every=0):
    for i in range(n):
        value = b"\xff\xfe bad" if bad_every and i % bad_every == 0 else f"hello world {i}".encode()
        kafka.produce(i % 2, value, t + i * 60_000)


def run(fs, paths, kafka, **kw):
    opts = kw.pop("options", LandingOptions(compact=False))
    return landing.land_topic(fs, paths, kafka, FakeWriter(fs, kafka, **kw), opts, run_id="test")


# ---- the happy path ---------------------------------------------------------------------------


def test_runs_land_each_record_once_with_report(setup):
    fs, paths, kafka = setup
    produce_batch(kafka, 10, T0, bad_every=4)
    r1 = run(fs, paths, kafka)
    assert r1["status"] == "landed"
    assert r1["totals"]["records"] + r1["totals"]["quarantined"] == 10
    assert r1["totals"]["quarantined"] == 3
    assert {p["partition"]: p["offset_range"] for p in r1["partitions"]} == {0: [0, 5], 1: [0, 5]}
    assert all(p["lag_before"] == 5 and p["lag_after"] == 0 for p in r1["partitions"])
    produce_batch(kafka, 6, T0 + 2 * HOUR)
    r2 = run(fs, paths, kafka)
    assert {p["partition"]: p["offset_range"] for p in r2["partitions"]} == {0: [5, 8], 1: [5, 8]}
    assert run(fs, paths, kafka)["status"] == "noop"
    check_exactly_once(fs, paths, kafka, complete=True)
    # deterministic names, hour folders from the record timestamps, nothing left in staging
    names = [st.path[len(paths.root) + 1 :] for st in landing.walk_files(fs, paths.root)]
    assert "dt=2025-01-01/hr=00/part-t1+1+0000000000000000000+0000000000000000002.parquet" in names
    assert all(n.startswith(("dt=2025-01-01/hr=00/", "dt=2025-01-01/hr=02/")) for n in names)
    assert fs.list(posixpath.join(paths.landing, "staging")) == [] or all(
        not fs.list(st.path) for st in fs.list(posixpath.join(paths.landing, "staging"))
    )
    bad = pq.read_table(io.BytesIO(fs.read(landing.walk_files(fs, paths.quarantine)[0].path)))
    assert bad.column("reason")[0].as_py() == "invalid UTF-8"


def test_without_a_writer_a_run_commits_only_when_nothing_is_new(setup):
    """The run without Spark (writer None): a no-op commits like any run; records to land stop it
    before it publishes anything (the Spark job's run takes over), whatever recovery did first."""
    fs, paths, kafka = setup
    produce_batch(kafka, 10, T0)
    run(fs, paths, kafka)
    noop = landing.land_topic(fs, paths, kafka, None, LandingOptions(compact=False), run_id="no-spark")
    assert noop["status"] == "noop" and noop["seq"] == 2
    assert noop["first_record_ms"] is None and noop["committed_ms"] >= noop["planned_at_ms"]
    produce_batch(kafka, 3, T0 + HOUR)
    before = sorted(st.name for st in fs.list(paths.log_dir))
    with pytest.raises(landing.StagingNeeded, match="3 offsets to land"):
        landing.land_topic(fs, paths, kafka, None, LandingOptions(compact=False), run_id="no-spark")
    assert sorted(st.name for st in fs.list(paths.log_dir)) == before
    landed = run(fs, paths, kafka)
    assert landed["seq"] == 3 and landed["totals"]["records"] == 3
    check_exactly_once(fs, paths, kafka, complete=True)


def test_the_report_has_the_job_clock_from_the_first_record_to_the_commit(setup):
    fs, paths, kafka = setup
    produce_batch(kafka, 4, T0)

    class TimedWriter(FakeWriter):
        def write(self, plan, staging_dir, records_per_file):
            result = super().write(plan, staging_dir, records_per_file)
            return WriteResult(result.records, result.quarantined, result.read_gaps, first_record_ms=123)

    report = landing.land_topic(fs, paths, kafka, TimedWriter(fs, kafka), LandingOptions(compact=False))
    assert report["first_record_ms"] == 123 and report["committed_ms"] >= report["planned_at_ms"]


def test_has_new_records_compares_the_last_commit_with_kafka(setup, tmp_path):
    from streamlab import landing_run

    fs, paths, kafka = setup
    args = landing_run.parse_args(
        ["--bootstrap-servers", "x:1", "--topic", TOPIC, "--raw-root", str(tmp_path / "raw")]
    )
    assert not landing_run.has_new_records(fs, args, kafka)  # an empty topic, never landed
    produce_batch(kafka, 4, T0)
    assert landing_run.has_new_records(fs, args, kafka)  # never landed
    run(fs, paths, kafka)
    assert not landing_run.has_new_records(fs, args, kafka)
    kafka.records[2] = []  # a partition added, still empty
    kafka.earliest[2] = 0
    assert not landing_run.has_new_records(fs, args, kafka)
    kafka.produce(2, b"new", T0)
    assert landing_run.has_new_records(fs, args, kafka)


def test_report_is_readable_text(setup):
    fs, paths, kafka = setup
    produce_batch(kafka, 4, T0)
    report = {"run_id": "r", "status": "ok", "topics": [run(fs, paths, kafka)]}
    text = landing.format_report(report)
    assert "t1: landed" in text and "[0, 2)" in text
    json.dumps(report)  # serializable for XCom


# ---- crashes between every step ---------------------------------------------------------------


def _changes_of_a_clean_run(tmp_path):
    fs = LocalFileSystem()
    paths = TopicPaths(TOPIC, str(tmp_path / "probe" / "raw"), str(tmp_path / "probe" / "q"))
    kafka = FakeKafka()
    produce_batch(kafka, 8, T0, bad_every=5)
    run(fs, paths, kafka)
    produce_batch(kafka, 9, T0 + HOUR, bad_every=4)
    counting = CrashingFS(fs)
    run(counting, paths, kafka)
    return counting.changes


def test_crash_before_every_change_then_recover(tmp_path):
    total = _changes_of_a_clean_run(tmp_path)
    assert total > 20
    for k in range(total + 1):
        fs = LocalFileSystem()
        paths = TopicPaths(TOPIC, str(tmp_path / f"c{k}" / "raw"), str(tmp_path / f"c{k}" / "q"))
        kafka = FakeKafka()
        produce_batch(kafka, 8, T0, bad_every=5)
        run(fs, paths, kafka)
        produce_batch(kafka, 9, T0 + HOUR, bad_every=4)
        checked = CrashingFS(fs, crash_at=k, after_change=_checker(fs, paths, kafka))
        crashed = False
        try:
            run(checked, paths, kafka)
        except Crash:
            crashed = True
        assert crashed == (k < total)
        check_exactly_once(fs, paths, kafka)
        produce_batch(kafka, 3, T0 + 2 * HOUR)  # more data arrives before the next run
        checked.crash_at = None
        report = run(checked, paths, kafka)
        check_exactly_once(fs, paths, kafka, complete=True)
        assert report["status"] == "landed"
        assert run(fs, paths, kafka)["status"] == "noop"
        check_exactly_once(fs, paths, kafka, complete=True)


def test_crash_during_recovery_too(tmp_path):
    """Two crashes in a row: during a run, then during the next run's recovery."""
    total = _changes_of_a_clean_run(tmp_path)
    for k in range(4, total, 3):
        for j in (0, 1, 2, 4, 7):
            fs = LocalFileSystem()
            base = tmp_path / f"d{k}-{j}"
            paths = TopicPaths(TOPIC, str(base / "raw"), str(base / "q"))
            kafka = FakeKafka()
            produce_batch(kafka, 8, T0, bad_every=5)
            run(fs, paths, kafka)
            produce_batch(kafka, 9, T0 + HOUR, bad_every=4)
            for crash_at in (k, j):
                try:
                    run(CrashingFS(fs, crash_at, _checker(fs, paths, kafka)), paths, kafka)
                except Crash:
                    pass
                check_exactly_once(fs, paths, kafka)
            run(fs, paths, kafka)
            check_exactly_once(fs, paths, kafka, complete=True)


def test_recovery_notes_say_what_happened(setup):
    fs, paths, kafka = setup
    produce_batch(kafka, 6, T0)
    with pytest.raises(Crash):  # crash right after the outcome "staged" was published
        run(CrashingFS(fs, crash_at=_index_of_first_rename_into_place(fs, paths, kafka)), paths, kafka)
    notes = run(fs, paths, kafka)["recovered"]
    assert any("rolled forward" in n for n in notes)
    check_exactly_once(fs, paths, kafka, complete=True)


def _index_of_first_rename_into_place(fs, paths, kafka):
    """Change number of the first rename out of staging in a clean run (probed on a copy)."""
    import shutil
    import tempfile

    probe = tempfile.mkdtemp()
    try:
        ppaths = TopicPaths(TOPIC, posixpath.join(probe, "raw"), posixpath.join(probe, "q"))
        calls = []

        class Spy(CrashingFS):
            def __getattr__(self, name):
                f = super().__getattr__(name)
                if name == "rename":

                    def spy(src, dst):
                        if "/staging/" in src and "/_landing/" not in dst:
                            calls.append(self.changes)
                        return f(src, dst)

                    return spy
                return f

        k = FakeKafka()
        k.records = kafka.records
        run(Spy(LocalFileSystem()), ppaths, k)
        return calls[0]
    finally:
        shutil.rmtree(probe)


# ---- planning -----------------------------------------------------------------------------------


def test_plan_starts_where_the_last_commit_ended_and_new_partitions_at_zero():
    r = landing.plan_ranges("t", {0: 10}, {0: (0, 15), 1: (0, 4)})
    assert (r.start, r.end, r.gaps) == ({0: 10, 1: 0}, {0: 15, 1: 4}, [])


def test_retention_gap_fails_loudly_naming_the_range(setup):
    fs, paths, kafka = setup
    produce_batch(kafka, 10, T0)
    run(fs, paths, kafka)
    produce_batch(kafka, 10, T0 + HOUR)  # offsets 5..9 in each partition
    kafka.earliest[1] = 7  # retention deleted offsets 5, 6 of partition 1 before they were landed
    with pytest.raises(DataLossError) as e:
        run(fs, paths, kafka)
    msg = str(e.value)
    assert "topic 't1' partition 1: offsets [5, 7)" in msg and "--accept-data-loss" in msg
    assert [(g.partition, g.start, g.end) for g in e.value.gaps] == [(1, 5, 7)]
    assert landing.read_log(fs, paths).open_seqs() == []  # nothing planned, nothing changed
    r = run(fs, paths, kafka, options=LandingOptions(accept_data_loss=True, compact=False))
    p1 = next(p for p in r["partitions"] if p["partition"] == 1)
    assert p1["gap"] == [5, 7] and p1["offset_range"] == [7, 10] and p1["lag_before"] == 5
    seen = check_exactly_once(fs, paths, kafka, complete=True, lost={(1, 5), (1, 6)})
    assert (1, 5) not in seen and (1, 7) in seen


def test_offsets_deleted_while_read_are_recorded_in_the_commit_and_the_report(setup):
    fs, paths, kafka = setup
    produce_batch(kafka, 10, T0)

    def retention_meanwhile():  # Kafka deletes offsets 0-2 of partition 0 after the plan
        kafka.earliest[0] = 3

    writer = FakeWriter(fs, kafka, during_write=retention_meanwhile)
    opts = LandingOptions(compact=False, accept_data_loss=True)
    report = landing.land_topic(fs, paths, kafka, writer, opts, run_id="r")
    parts = {p["partition"]: p for p in report["partitions"]}
    assert parts[0]["read_gaps"] == [[0, 3]] and parts[1]["read_gaps"] == []
    assert parts[0]["records"] == 2 and parts[0]["offset_range"] == [0, 5]
    assert landing.latest_commit(fs, paths)["partitions"]["0"]["read_gaps"] == [[0, 3]]
    assert "deleted while read [[0, 3]]" in landing.format_report({"topics": [report]})
    check_exactly_once(fs, paths, kafka, complete=True, lost={(0, 0), (0, 1), (0, 2)})


def test_offsets_going_backwards_is_a_topic_reset():
    with pytest.raises(landing.TopicResetError, match="truncated.*--on-topic-reset land-new"):
        landing.plan_ranges("t", {0: 10}, {0: (0, 3)})
    with pytest.raises(landing.TopicResetError, match="no longer exist"):
        landing.plan_ranges("t", {0: 1, 1: 1}, {0: (0, 3)})
    assert landing.plan_ranges("t", {0: 10, 1: 4}, {0: (0, 3), 1: (0, 6)}, land_new=True).start == {
        0: 3,
        1: 4,
    }


def landed_values(fs, paths):
    """(generation, partition, offset, value) of every visible raw row, and the file names."""
    rows = []
    for st in landing.walk_files(fs, paths.root):
        gen = landing.parse_file_name(st.name).generation
        table = pq.read_table(io.BytesIO(fs.read(st.path)))
        for r in table.to_pylist():
            rows.append((gen, r["partition"], r["offset"], r["value"]))
    return rows


def test_a_recreated_topic_fails_loudly_then_lands_as_a_new_generation(setup):
    fs, paths, kafka = setup
    produce_batch(kafka, 10, T0)
    run(fs, paths, kafka)
    assert landing.latest_commit(fs, paths)["topic_id"] == "topic-id-1"
    before = landed_values(fs, paths)
    kafka.records, kafka.id = {0: [], 1: []}, "topic-id-2"  # deleted and created again
    for i in range(16):  # the new topic grows past the old committed end (5 per partition)
        kafka.produce(i % 2, f"new {i}".encode(), T0 + i * 60_000)
    with pytest.raises(landing.TopicResetError, match="topic ID is topic-id-2.*topic-id-1"):
        run(fs, paths, kafka)
    assert landed_values(fs, paths) == before and landing.latest_commit(fs, paths)["seq"] == 1
    report = run(fs, paths, kafka, options=LandingOptions(compact=False, on_topic_reset="land-new"))
    assert report["status"] == "landed" and any("topic reset" in n for n in report["recovered"])
    assert {p["partition"]: p["offset_range"] for p in report["partitions"]} == {0: [0, 8], 1: [0, 8]}
    rows = landed_values(fs, paths)
    new = sorted(r for r in rows if r[0] == 1)
    assert sorted(r for r in rows if r[0] == 0) == sorted(before)
    assert [v for *_k, v in sorted(new, key=lambda r: (r[2], r[1]))] == [f"new {i}" for i in range(16)]
    commit = landing.latest_commit(fs, paths)
    assert (commit["topic_id"], commit["generation"]) == ("topic-id-2", 1)
    kafka.produce(0, b"later", T0)
    assert run(fs, paths, kafka)["totals"]["records"] == 1  # the new generation goes on as usual


def test_a_truncated_partition_fails_loudly_then_goes_on_from_its_new_end(setup):
    fs, paths, kafka = setup
    produce_batch(kafka, 10, T0)
    run(fs, paths, kafka)
    kafka.records[0] = kafka.records[0][:3]  # unclean leader election: offsets 3-4 are gone
    kafka.produce(0, b"after the election", T0 + HOUR)
    with pytest.raises(landing.TopicResetError, match="partition 0 ends at offset 4, below the 5"):
        run(fs, paths, kafka)
    report = run(fs, paths, kafka, options=LandingOptions(compact=False, on_topic_reset="land-new"))
    assert {p["partition"]: p["offset_range"] for p in report["partitions"]} == {0: [4, 4], 1: [5, 5]}
    kafka.produce(0, b"next", T0 + HOUR)  # offset 4 again: a new record, a new generation's file
    run(fs, paths, kafka)
    rows = landed_values(fs, paths)
    assert (1, 0, 4, "next") in rows and (0, 0, 4, "hello world 8") in rows


def test_partitions_added_are_landed_from_offset_zero(setup):
    fs, paths, kafka = setup
    produce_batch(kafka, 4, T0)
    run(fs, paths, kafka)
    kafka.records[2], kafka.earliest[2] = [], 0
    kafka.produce(2, b"on the new partition", T0)
    produce_batch(kafka, 2, T0)
    report = run(fs, paths, kafka)
    assert {p["partition"]: p["offset_range"] for p in report["partitions"]} == {
        0: [2, 3],
        1: [2, 3],
        2: [0, 1],
    }
    check_exactly_once(fs, paths, kafka, complete=True)


def test_records_per_file_follows_the_bytes_seen_last_time():
    assert landing.records_per_file(100.0, 128 * 2**20, 10**7) == 1342177
    assert landing.records_per_file(None, 64_000, 10**7) == 1000
    assert landing.records_per_file(1.0, 10**12, 5_000_000) == 5_000_000


def test_file_names_are_deterministic_and_parse_back():
    name = landing.file_name("Hello-Kafka", 3, 120, 4567)
    assert name == "part-Hello-Kafka+3+0000000000000000120+0000000000000004567.parquet"
    assert landing.parse_file_name(name) == landing.DataFileName(3, 120, 4567)
    assert landing.parse_file_name("_SUCCESS") is None
    long = landing.file_name("x" * 249, 0, 0, 0)
    assert len(long) < 255 and landing.parse_file_name(long) == landing.DataFileName(0, 0, 0)


# ---- concurrent runs (a zombie of a killed Airflow task) ----------------------------------------


def test_zombie_run_cannot_publish_after_being_aborted(setup):
    fs, paths, kafka = setup
    produce_batch(kafka, 6, T0)
    second = {}

    def other_run_meanwhile():  # while run A writes its staging, run B recovers and lands
        second["report"] = run(fs, paths, kafka)

    with pytest.raises(ConcurrentRunError):
        landing.land_topic(fs, paths, kafka, FakeWriter(fs, kafka, during_write=other_run_meanwhile),
                           LandingOptions(compact=False), run_id="zombie")  # fmt: skip
    assert second["report"]["status"] == "landed"
    check_exactly_once(fs, paths, kafka, complete=True)
    assert run(fs, paths, kafka)["status"] == "noop"
    check_exactly_once(fs, paths, kafka, complete=True)


def test_two_runs_planning_the_same_sequence_number(setup):
    fs, paths, kafka = setup
    produce_batch(kafka, 4, T0)
    fs.mkdirs(paths.log_dir)
    landing.publish_json(fs, paths.record(1, landing.PLAN), {"seq": 1})
    original = landing.read_log

    def stale_read(fs_, paths_):  # run B read the log just before run A published plan 1
        state = original(fs_, paths_)
        state.kinds.pop(1, None)
        return state

    landing.read_log = stale_read
    try:
        with pytest.raises(ConcurrentRunError, match="planned by another run"):
            run(fs, paths, kafka)
    finally:
        landing.read_log = original


# ---- compaction -------------------------------------------------------------------------------


def _small_files_in_closed_hours(fs, paths, kafka, runs=4):
    for i in range(runs):
        produce_batch(kafka, 6, T0 + i * 5 * 60_000)  # all in hour 00
        run(fs, paths, kafka, split=2)
    produce_batch(kafka, 2, T0 + 3 * HOUR)  # a later record moves the watermark past hour 00
    # (the hours are 2025's; look back far enough to see them from today's watermark)
    return LandingOptions(small_file_bytes=10**6, compact_target_bytes=10**7, close_after_ms=0,
                          compact_lookback_hours=10**6)  # fmt: skip


def test_compaction_merges_small_files_of_a_closed_hour(setup):
    fs, paths, kafka = setup
    opts = _small_files_in_closed_hours(fs, paths, kafka)
    hour = posixpath.join(paths.root, "dt=2025-01-01/hr=00")
    before = [st.name for st in fs.list(hour)]
    assert len(before) >= 8
    report = landing.land_topic(fs, paths, kafka, FakeWriter(fs, kafka), opts, run_id="c")
    assert report["compaction"]["merged_groups"] == 2  # one per Kafka partition
    after = [st for st in fs.list(hour)]
    assert len(after) == 2 and all(landing.parse_file_name(st.name) for st in after)
    names = {landing.parse_file_name(st.name) for st in after}
    assert names == {landing.DataFileName(0, 0, 11), landing.DataFileName(1, 0, 11)}
    check_exactly_once(fs, paths, kafka, complete=True)
    merged = pq.read_table(io.BytesIO(fs.read(after[0].path)))
    assert merged.column("offset").to_pylist() == list(range(12))
    assert merged.column("value").to_pylist()[0] == "hello world 0"


class SnapshotFS(LocalFileSystem):
    """A local folder with HDFS snapshots, and the NameNode's rule that matters here: a file that
    is in a snapshot cannot be a concat source ("Concat: the source file ... is in snapshot")."""

    can_snapshot = True

    def __init__(self):
        self.snaps: dict[str, dict[str, set[str]]] = {}

    def allow_snapshot(self, path):
        self.snaps.setdefault(path, {})

    def create_snapshot(self, path, name):
        if name in self.snaps[path]:
            raise OSError(f"snapshot {name} exists")
        self.snaps[path][name] = {st.path for st in landing.walk_files(self, path, include_hidden=True)}

    def delete_snapshot(self, path, name):
        del self.snaps[path][name]

    def list(self, path):
        if path.endswith("/.snapshot"):
            names = sorted(self.snaps.get(path[: -len("/.snapshot")], {}))
            return [landing.FileStatus(f"{path}/{n}", n, True) for n in names]
        return super().list(path)

    def concat(self, target, sources):
        for snaps in self.snaps.values():
            for files in snaps.values():
                if caught := [src for src in sources if src in files]:
                    raise OSError(f"Concat: the source file {caught[0]} is in snapshot")
        super().concat(target, sources)


def test_each_commit_leaves_a_snapshot_and_compaction_is_not_blocked_by_them(tmp_path):
    fs = SnapshotFS()
    paths = TopicPaths(TOPIC, str(tmp_path / "raw"), str(tmp_path / "q"))
    kafka = FakeKafka()
    for i in range(3):  # an hour still open: its small files are in every snapshot taken since
        produce_batch(kafka, 4, T0 + i * 60_000)
        report = run(fs, paths, kafka, split=1, options=LandingOptions(compact=False, keep_snapshots=2))
        assert report["snapshot"]["name"] == f"landed-{i + 1:012d}"
    assert sorted(fs.snaps[paths.root]) == ["landed-000000000002", "landed-000000000003"]
    assert landing.latest_snapshot(fs, paths).endswith("/.snapshot/landed-000000000003")
    opts = LandingOptions(small_file_bytes=10**6, compact_target_bytes=10**7, close_after_ms=0,
                          compact_lookback_hours=10**6)  # fmt: skip
    report = landing.land_topic(fs, paths, kafka, FakeWriter(fs, kafka), opts, run_id="closes the hour")
    assert report["compaction"]["merged_groups"] == 2 and report["compaction"]["snapshots_released"] == 2
    assert sorted(fs.snaps[paths.root]) == ["landed-000000000004"]  # taken after the compaction
    assert fs.snaps[paths.root]["landed-000000000004"] >= {
        st.path for st in landing.walk_files(fs, paths.root)
    }
    check_exactly_once(fs, paths, kafka, complete=True)


def test_compaction_crash_before_every_change(tmp_path):
    probe_fs = LocalFileSystem()
    probe = TopicPaths(TOPIC, str(tmp_path / "p" / "raw"), str(tmp_path / "p" / "q"))
    kafka = FakeKafka()
    opts = _small_files_in_closed_hours(probe_fs, probe, kafka)
    watermark = landing.latest_commit(probe_fs, probe)["planned_at_ms"] + 10 * HOUR
    counting = CrashingFS(probe_fs)
    landing.compact_topic(counting, probe, watermark, opts)
    total = counting.changes
    assert total >= 10
    for k in range(total + 1):
        fs = LocalFileSystem()
        paths = TopicPaths(TOPIC, str(tmp_path / f"k{k}" / "raw"), str(tmp_path / f"k{k}" / "q"))
        kafka = FakeKafka()
        _small_files_in_closed_hours(fs, paths, kafka)
        checked = CrashingFS(fs, crash_at=k, after_change=_checker(fs, paths, kafka))
        try:
            landing.compact_topic(checked, paths, watermark, opts)
        except Crash:
            pass
        check_exactly_once(fs, paths, kafka)
        landing.compact_topic(fs, paths, watermark, opts)
        hour = posixpath.join(paths.root, "dt=2025-01-01/hr=00")
        assert len(fs.list(hour)) == 2, [st.name for st in fs.list(hour)]
        assert fs.list(paths.compact_dir) == []
        check_exactly_once(fs, paths, kafka)


def test_open_hours_are_not_compacted(setup):
    fs, paths, kafka = setup
    for i in range(3):
        produce_batch(kafka, 4, T0 + i * 60_000)
        run(fs, paths, kafka, split=1)
    hour = posixpath.join(paths.root, "dt=2025-01-01/hr=00")
    n = len(fs.list(hour))
    watermark = T0 + HOUR + 5 * 60_000  # hour 00 ended 5 minutes before the watermark
    opts = LandingOptions(small_file_bytes=10**6, close_after_ms=10 * 60_000, compact_lookback_hours=10**6)
    assert landing.compact_topic(fs, paths, watermark, opts)["merged_groups"] == 0
    assert len(fs.list(hour)) == n
    assert landing.compact_topic(fs, paths, watermark + 10 * 60_000, opts)["merged_groups"] == 2


def test_plan_compaction_groups_consecutive_small_files_up_to_the_target():
    def st(p, first, size):
        return landing.FileStatus(f"/x/{first}", landing.file_name("t", p, first, first + 9), False, size)

    files = [st(0, 0, 10), st(0, 10, 10), st(0, 20, 100), st(0, 30, 10), st(0, 40, 10), st(0, 50, 10),
             st(1, 0, 10), st(2, 0, 10), st(2, 10, 10)]  # fmt: skip
    groups = landing.plan_compaction(files, small=50, target=25)
    assert [[g.name.split("+")[1] + ":" + g.name.split("+")[2][-2:] for g in grp] for grp in groups] == [
        ["0:00", "0:10"],
        ["0:30", "0:40"],
        ["2:00", "2:10"],
    ]


# ---- parquet footers --------------------------------------------------------------------------


def _pq_bytes(offsets, page_index=False, value_type=None):
    value_type = value_type or pa.string()
    t = pa.table({
        "partition": pa.array([0] * len(offsets), pa.int32()),
        "offset": pa.array(offsets, pa.int64()),
        "value": pa.array([str(o) for o in offsets], value_type) if value_type == pa.string()
        else pa.array([str(o).encode() for o in offsets], value_type),
    })  # fmt: skip
    buf = io.BytesIO()
    pq.write_table(t, buf, row_group_size=3, write_page_index=page_index)
    return buf.getvalue()


def _raw_footer(data):
    return parquet_footer.footer_bytes(lambda o, n: data[o : o + n], len(data))


def test_footer_round_trip_is_byte_exact_and_stats_are_read():
    data = _pq_bytes(list(range(10, 20)), page_index=True)
    raw = _raw_footer(data)
    meta = parquet_footer.decode_struct(raw)
    assert parquet_footer.encode_struct(meta) == raw
    assert parquet_footer.num_rows(meta) == 10
    assert parquet_footer.int_column_ranges(meta)["offset"] == parquet_footer.ColumnRange(10, 19)


def test_concatenated_files_plus_merged_footer_read_as_one_file():
    parts = [_pq_bytes([0, 1, 2, 3]), _pq_bytes([4, 5], page_index=True), _pq_bytes(list(range(6, 13)))]
    footer = parquet_footer.merged_footer([(_raw_footer(d), len(d)) for d in parts])
    merged = b"".join(parts) + footer
    table = pq.read_table(io.BytesIO(merged))
    assert table.column("offset").to_pylist() == list(range(13))
    assert table.column("value").to_pylist() == [str(i) for i in range(13)]
    meta = parquet_footer.decode_struct(_raw_footer(merged))
    assert parquet_footer.int_column_ranges(meta)["offset"] == parquet_footer.ColumnRange(0, 12)


def test_files_with_different_schemas_are_not_merged():
    a, b = _pq_bytes([0]), _pq_bytes([1], value_type=pa.binary())
    with pytest.raises(parquet_footer.ParquetFooterError, match="schemas"):
        parquet_footer.merged_footer([(_raw_footer(a), len(a)), (_raw_footer(b), len(b))])


# ---- completeness for reprocessing --------------------------------------------------------------


def test_day_is_complete_once_a_run_planned_after_its_end_committed(setup, monkeypatch):
    fs, paths, kafka = setup
    assert landing.day_complete(fs, paths, "2025-01-01") == (False, None)
    produce_batch(kafka, 2, T0)
    monkeypatch.setattr(landing, "now_ms", lambda: T0 + 23 * HOUR)
    run(fs, paths, kafka)
    assert landing.day_complete(fs, paths, "2025-01-01")[0] is False
    monkeypatch.setattr(landing, "now_ms", lambda: T0 + 24 * HOUR + 1)
    run(fs, paths, kafka)  # a no-op run also moves the landed-through instant
    assert landing.day_complete(fs, paths, "2025-01-01") == (True, T0 + 24 * HOUR + 1)
    assert landing.day_complete(fs, paths, "2025-01-01", lateness_ms=HOUR)[0] is False


def test_report_path_is_one_safe_component():
    assert lake.report_path("manual__2025-01-01T00:00:00+00:00", "/r") == (
        "/r/manual__2025-01-01T00_00_00_00_00.json"
    )


def test_lake_paths_and_assets_are_the_documented_ones():
    paths = TopicPaths("Hello-Kafka")
    assert paths.root == "/data/raw/Hello-Kafka"
    assert paths.log_dir == "/data/raw/Hello-Kafka/_landing/log"
    assert paths.quarantine == "/data/quarantine/Hello-Kafka"
    assert lake.hour_dir(T0 + 13 * HOUR + 5) == "dt=2025-01-01/hr=13"
    assert lake.raw_day("Hello-Kafka", "2025-01-01") == "/data/raw/Hello-Kafka/dt=2025-01-01"
    assert lake.wordcount_day("2025-01-01") == "/data/curated/wordcount/dt=2025-01-01"
    assert lake.report_path("r1") == "/data/_landing/reports/r1.json"
    # Asset URIs are identities in Airflow's database: changing one orphans its history.
    assert lake.raw_asset("Hello-Kafka") == {
        "name": "raw/Hello-Kafka",
        "uri": "streamlab-raw://data/raw/Hello-Kafka",
    }
    assert lake.WORDCOUNT_ASSET == {
        "name": "curated/wordcount",
        "uri": "streamlab-curated://data/curated/wordcount",
    }


def test_topic_ids_read_without_spark_match_the_java_clients_form():
    """Commit records hold Java's `Uuid.toString()` (URL-safe base64); librdkafka's str() uses `+`
    and `/`: compared as is, about half of all topics would look deleted and re-created."""
    from confluent_kafka import Uuid

    from streamlab import landing_run

    # Java: new Uuid(-1L, -1L).toString(), new Uuid(0x0123456789abcdefL, 0xfedcba9876543210L).toString()
    assert landing_run.java_topic_id(Uuid(-1, -1)) == "_____________________w"
    assert (
        landing_run.java_topic_id(Uuid(0x0123456789ABCDEF, -0x0123456789ABCDF0)) == "ASNFZ4mrze_-3LqYdlQyEA"
    )
    assert str(Uuid(-1, -1)) == "/////////////////////w"  # why the conversion exists


def test_without_a_writer_only_landing_errors_are_reported_others_go_to_spark(setup, tmp_path):
    """A topic error of the protocol (a fenced run, a reset topic) is the run's answer, as in the
    Spark job; an error of WebHDFS or librdkafka is raised, and the task submits the Spark job."""
    from streamlab import landing_run

    fs, paths, kafka = setup
    argv = ["--bootstrap-servers", "x:1", "--topic", TOPIC, "--consumer-group", "", "--raw-root",
            str(tmp_path / "raw"), "--reports-root", str(tmp_path / "reports")]  # fmt: skip
    produce_batch(kafka, 4, T0)
    run(fs, paths, kafka)
    args = landing_run.parse_args(argv)
    assert landing_run.run(args, fs, kafka, None)["topics"][0]["status"] == "noop"
    kafka.id = "topic-id-2"  # deleted and created again
    report = landing_run.run(args, fs, kafka, None)
    assert report["status"] == "failed" and report["topics"][0]["error_type"] == "TopicResetError"

    class Down(FakeKafka):
        def available(self, topic):
            raise ConnectionError("broker down")

    with pytest.raises(ConnectionError):
        landing_run.run(args, fs, Down(), None)
    writer = FakeWriter(fs, kafka)
    assert landing_run.run(args, fs, Down(), writer)["topics"][0]["error_type"] == "ConnectionError"


class TopicsKafka:
    """Several topics, each a FakeKafka (which ignores the name it is asked about)."""

    def __init__(self, names):
        self.topics = {name: FakeKafka(partitions=2) for name in names}

    def topic_id(self, topic):
        return f"id-{topic}"

    def available(self, topic):
        return self.topics[topic].available(topic)


class OverlapWriter:
    """Stages each topic with its FakeWriter and counts the writes in flight. The first `hold`
    writes wait (at most 10 s) until `hold` are in flight, so a run that lands `hold` topics side
    by side shows them at once (one that lands them in turn shows 1, after the waits time out)."""

    def __init__(self, fs, kafka, hold):
        self.fs, self.kafka, self.hold = fs, kafka, hold
        self.cond = threading.Condition()
        self.started = self.in_flight = self.most = 0

    def write(self, plan, staging_dir, records_per_file):
        with self.cond:
            self.started += 1
            self.in_flight += 1
            self.most = max(self.most, self.in_flight)
            self.cond.notify_all()
            if self.started <= self.hold:
                self.cond.wait_for(lambda: self.in_flight >= self.hold, timeout=10)
        try:
            return FakeWriter(self.fs, self.kafka.topics[plan["topic"]]).write(
                plan, staging_dir, records_per_file
            )
        finally:
            with self.cond:
                self.in_flight -= 1


@pytest.mark.parametrize("parallel", [1, 3])
def test_a_run_lands_its_topics_side_by_side_each_exactly_once(tmp_path, parallel):
    """--parallel-topics N: N topics' protocols and writes at once (each its own log, plan and
    commit); every topic lands each record once, a failing topic fails alone, the report keeps
    the topics' order and says when each started and ended."""
    from streamlab import landing_run

    fs = LocalFileSystem()
    names = [f"t{i}" for i in range(7)]
    kafka = TopicsKafka(names)
    for i, name in enumerate(names):
        produce_batch(kafka.topics[name], 10 + i, T0)
    kafka.topics["t5"].earliest[0] = 2  # retention deleted records never landed: that topic fails
    args = landing_run.parse_args(
        ["--bootstrap-servers", "x:1", "--topic", ",".join(names), "--consumer-group", "",
         "--parallel-topics", str(parallel), "--compact", "false", "--raw-root", str(tmp_path / "raw"),
         "--quarantine-root", str(tmp_path / "q"), "--reports-root", str(tmp_path / "reports")]
    )  # fmt: skip
    writer = OverlapWriter(fs, kafka, hold=parallel)
    report = landing_run.run(args, fs, kafka, writer)
    assert writer.most == parallel
    assert report["parallel_topics"] == parallel
    assert [t["topic"] for t in report["topics"]] == names
    assert report["status"] == "failed" and report["failed_topics"] == ["t5"]
    assert report["topics"][5]["error_type"] == "DataLossError"
    for name, t in zip(names, report["topics"], strict=True):
        if name == "t5":
            continue
        paths = TopicPaths(name, raw_root=str(tmp_path / "raw"), quarantine_root=str(tmp_path / "q"))
        check_exactly_once(fs, paths, kafka.topics[name], complete=True)
        assert t["status"] == "landed" and t["started_ms"] <= t["committed_ms"] <= t["finished_ms"]
    again = landing_run.run(args, fs, kafka, OverlapWriter(fs, kafka, hold=0))
    assert [t["status"] for t in again["topics"] if t["topic"] != "t5"] == ["noop"] * 6


def test_parallel_topics_must_be_a_positive_number_and_each_topic_is_landed_once(capsys):
    from streamlab import landing_run

    with pytest.raises(SystemExit):
        landing_run.parse_args(["--bootstrap-servers", "x:1", "--topic", "a", "--parallel-topics", "0"])
    args = landing_run.parse_args(["--bootstrap-servers", "x:1", "--topic", "a,b", "--topic", "a=text"])
    assert args.topic == [("a", "text"), ("b", "text")]  # not twice: two threads would fence each other
    with pytest.raises(SystemExit):
        landing_run.parse_args(["--bootstrap-servers", "x:1", "--topic", "a,a=bytes"])
    assert "'a' is given as text and as bytes" in capsys.readouterr().err
