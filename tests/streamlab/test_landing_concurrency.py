"""Two or three landing runs (and compactions) of one topic at once, interleaved step by step.

Each run is a thread that stops before every file system operation and every Kafka call; the
test decides which run takes the next step (the model of SIGSTOP/SIGCONT, a zombie Spark job
beside its Airflow retry, the by-hand run beside a scheduled one) or kills one (kill -9). After
every step a plain reader of the folder must see each record at most once and every committed
record; at the end a clean run lands everything, exactly once.

The named interleavings are the ones a review found on the unfenced protocol; each test fails
there (docs/landing.md, "Fencing").
"""

from __future__ import annotations

import io
import posixpath
import random
import threading

import pyarrow.parquet as pq
import pytest

from streamlab import landing
from streamlab.lake import TopicPaths
from streamlab.landing import ConcurrentRunError, LandingOptions, LocalFileSystem

from .test_landing import HOUR, T0, TOPIC, Crash, FakeKafka, FakeWriter, check_exactly_once, produce_batch

FS_OPS = ("status", "list", "read", "create", "rename", "delete", "mkdirs", "concat")


class Worker:
    """One run in a thread that only moves when the test lets it take a step."""

    def __init__(self, name, fn):
        self.name, self.fn = name, fn
        self.label = "start"
        self.finished = False
        self.result = self.error = None
        self._kill = False
        self._go = threading.Semaphore(0)
        self._stopped = threading.Semaphore(0)
        self.thread = threading.Thread(target=self._main, name=name, daemon=True)
        self.thread.start()

    def _main(self):
        self._go.acquire()
        try:
            if self._kill:
                raise Crash(f"{self.name} killed before it started")
            self.result = self.fn(self)
        except Crash:
            self.error = "killed"
        except Exception as e:  # kept for the test to judge
            self.error = e
        finally:
            self.finished = True
            self._stopped.release()

    def checkpoint(self, label):
        """Called by the run's thread before each operation: wait for the test's go."""
        self.label = label
        self._stopped.release()
        self._go.acquire()
        if self._kill:
            raise Crash(f"{self.name} killed before {label}")

    def step(self):
        if not self.finished:
            self._go.release()
            self._stopped.acquire()

    def kill(self):
        self._kill = True
        self.step()

    def run_until(self, predicate):
        """Steps until the run is about to do an operation whose label matches (or it ended)."""
        self.step()
        while not self.finished and not predicate(self.label):
            self.step()

    def finish(self):
        while not self.finished:
            self.step()
        return self


class SteppedFS:
    can_concat = True

    def __init__(self, inner, worker):
        self.inner, self.worker = inner, worker

    def __getattr__(self, name):
        attr = getattr(self.inner, name)
        if name not in FS_OPS:
            return attr

        def op(*args, **kwargs):
            self.worker.checkpoint(f"{name} " + " ".join(posixpath.basename(str(a)) for a in args[:2]))
            return attr(*args, **kwargs)

        return op


class SteppedKafka:
    def __init__(self, kafka, worker):
        self.kafka, self.worker = kafka, worker

    def topic_id(self, topic):
        return self.kafka.topic_id(topic)

    def available(self, topic):
        got = self.kafka.available(topic)  # what Kafka answered; the run may sit on it for long
        self.worker.checkpoint("kafka answered")
        return got


def landing_run(fs, paths, kafka, opts, run_id):
    def fn(worker):
        sfs = SteppedFS(fs, worker)
        return landing.land_topic(
            sfs, paths, SteppedKafka(kafka, worker), FakeWriter(sfs, kafka), opts, run_id
        )

    return fn


NO_COMPACTION = LandingOptions(compact=False)
COMPACT = LandingOptions(small_file_bytes=10**6, compact_target_bytes=10**7, close_after_ms=0,
                         compact_lookback_hours=10**6)  # fmt: skip


@pytest.fixture
def topic(tmp_path):
    fs = LocalFileSystem()
    paths = TopicPaths(TOPIC, raw_root=str(tmp_path / "raw"), quarantine_root=str(tmp_path / "quarantine"))
    return fs, paths, FakeKafka(partitions=2)


def is_publish(kind):
    return lambda label: label.startswith("rename ") and label.endswith(f".{kind}.json")


def after_recovery():
    """Matches the run's first read of the log after its recovery (which ends with the staging
    folders and a last look at the log for temporary files)."""
    seen = []

    def match(label):
        seen.append(label)
        return (
            label == "list log" and sum(x == "list log" for x in seen[seen.index("list staging") :]) == 2
            if "list staging" in seen
            else False
        )

    return match


# ---- the interleavings the review found -------------------------------------------------------


def test_run_planned_from_a_log_read_before_another_plan_cannot_land_the_same_range(topic):
    """(1a) B reads the log; A publishes plan N; B plans N+1 from the same start; both finish."""
    fs, paths, kafka = topic
    produce_batch(kafka, 8, T0)
    b = Worker("B", landing_run(fs, paths, kafka, NO_COMPACTION, "B"))
    b.run_until(after_recovery())  # B's recovery found nothing open
    a = Worker("A", landing_run(fs, paths, kafka, NO_COMPACTION, "A"))
    a.run_until(is_publish("plan"))
    a.step()  # A published plan 1 and starts writing it; B now reads the log and plans run 2
    b.finish()
    a.finish()
    check_exactly_once(fs, paths, kafka, complete=True)
    outcomes = sorted(str(w.error or w.result["status"]) for w in (a, b))
    assert sum(isinstance(w.error, ConcurrentRunError) for w in (a, b)) == 1, outcomes


def test_noop_run_cannot_commit_over_a_run_that_is_landing(topic):
    """(1b) B sees nothing new and commits N directly while A, planned just before, lands N."""
    fs, paths, kafka = topic
    produce_batch(kafka, 4, T0)
    landing.land_topic(fs, paths, kafka, FakeWriter(fs, kafka), NO_COMPACTION, "first")
    b = Worker("B", landing_run(fs, paths, kafka, NO_COMPACTION, "B"))
    b.run_until(lambda label: label == "kafka answered")  # nothing new for B
    produce_batch(kafka, 4, T0 + 60_000)
    a = Worker("A", landing_run(fs, paths, kafka, NO_COMPACTION, "A"))
    a.run_until(is_publish("plan"))
    a.step()
    b.finish()
    a.finish()
    check_exactly_once(fs, paths, kafka)
    landing.land_topic(fs, paths, kafka, FakeWriter(fs, kafka), NO_COMPACTION, "next")
    check_exactly_once(fs, paths, kafka, complete=True)


def test_writer_paused_across_trimmed_runs_cannot_land_its_range_again(topic):
    """(6) A plans, is frozen while more runs than the log keeps land, then resumes."""
    fs, paths, kafka = topic
    opts = LandingOptions(compact=False, keep_log_runs=3)
    produce_batch(kafka, 4, T0)
    a = Worker("A", landing_run(fs, paths, kafka, opts, "A"))
    a.run_until(is_publish("plan"))
    a.step()
    for i in range(8):  # each lands A's range again (and more), then the log is trimmed
        produce_batch(kafka, 2, T0 + (i + 1) * 60_000)
        landing.land_topic(fs, paths, kafka, FakeWriter(fs, kafka), opts, f"r{i}")
    assert not fs.status(paths.record(1, landing.PLAN)), "the frozen run's records were trimmed"
    a.finish()
    assert isinstance(a.error, ConcurrentRunError), a.error
    check_exactly_once(fs, paths, kafka, complete=True)
    landing.land_topic(fs, paths, kafka, FakeWriter(fs, kafka), opts, "after")
    check_exactly_once(fs, paths, kafka, complete=True)


def _three_small_files(fs, paths, kafka):
    for i in range(3):
        produce_batch(kafka, 2, T0 + i * 60_000)  # one record per partition per run
        landing.land_topic(fs, paths, kafka, FakeWriter(fs, kafka), NO_COMPACTION, f"r{i}")
    hour = posixpath.join(paths.root, "dt=2025-01-01/hr=00")
    files = [st for st in fs.list(hour) if landing.parse_file_name(st.name).partition == 0]
    assert len(files) == 3
    return hour, files


def test_two_compactions_of_overlapping_groups_lose_nothing(topic):
    """(2) [F1, F2] and [F2, F3] merged at once: F3's rows must not end up unreachable."""
    fs, paths, kafka = topic
    hour, (f1, f2, f3) = _three_small_files(fs, paths, kafka)
    a = Worker("A", lambda w: landing.merge_files(SteppedFS(fs, w), paths, hour, [f1, f2]))
    a.run_until(lambda label: label.startswith("concat"))  # A checked the lengths: about to concat
    b = Worker("B", lambda w: landing.merge_files(SteppedFS(fs, w), paths, hour, [f2, f3])).finish()
    a.finish()
    assert a.error is None and b.error is None, (a.error, b.error)
    check_exactly_once(fs, paths, kafka, complete=True)
    assert landing.compact_topic(fs, paths, landing.now_ms(), COMPACT)["recovered"] == []
    check_exactly_once(fs, paths, kafka, complete=True)


@pytest.mark.parametrize("pause_before", range(14))
def test_compaction_frozen_at_any_step_while_another_compacts(topic, pause_before):
    """Recovery never rolls back a live compaction into a loss: A frozen before its k-th
    operation, B compacts the same hour (recovering A's journal), then A resumes."""
    fs, paths, kafka = topic
    hour, (f1, f2, f3) = _three_small_files(fs, paths, kafka)
    a = Worker("A", lambda w: landing.merge_files(SteppedFS(fs, w), paths, hour, [f1, f2, f3]))
    for _ in range(pause_before + 1):
        a.step()
    b = Worker(
        "B", lambda w: landing.compact_topic(SteppedFS(fs, w), paths, landing.now_ms(), COMPACT)
    ).finish()
    check_exactly_once(fs, paths, kafka, complete=True)
    a.finish()
    assert a.error is None and b.error is None, (a.label, a.error, b.error)
    check_exactly_once(fs, paths, kafka, complete=True)
    landing.compact_topic(fs, paths, landing.now_ms(), COMPACT)
    assert fs.list(paths.compact_dir) == []
    assert [st.name for st in fs.list(hour) if st.name.startswith("_")] == []
    assert len([st for st in fs.list(hour) if landing.parse_file_name(st.name).partition == 0]) == 1
    check_exactly_once(fs, paths, kafka, complete=True)


def test_reader_in_name_order_never_sees_a_record_twice_while_a_compaction_runs(tmp_path):
    """A reader lists, then opens the files in name order while a compaction runs between any
    two of its reads: it reads each record at most once, or fails to open a merged-away file."""
    for concat_before in range(7):
        fs = LocalFileSystem()
        paths = TopicPaths(
            TOPIC, str(tmp_path / f"c{concat_before}" / "raw"), str(tmp_path / f"c{concat_before}" / "q")
        )
        kafka = FakeKafka(partitions=2)
        _three_small_files(fs, paths, kafka)
        listing = landing.walk_files(fs, paths.root)
        assert len(listing) == 6
        seen, failed = [], False
        for i, st in enumerate(listing):
            if i == concat_before:
                assert landing.compact_topic(fs, paths, landing.now_ms(), COMPACT)["merged_groups"] == 2
            try:
                table = pq.read_table(io.BytesIO(fs.read(st.path)))
            except FileNotFoundError:
                failed = True
                break
            seen += zip(
                table.column("partition").to_pylist(), table.column("offset").to_pylist(), strict=True
            )
        assert len(seen) == len(set(seen)), (concat_before, seen)
        assert failed or set(seen) == kafka.all_offsets()


# ---- random interleavings with kills ----------------------------------------------------------


@pytest.mark.parametrize("seed", range(6))
def test_random_interleavings_of_three_runs_with_kills(tmp_path, seed):
    rng = random.Random(seed)
    fs = LocalFileSystem()
    paths = TopicPaths(TOPIC, raw_root=str(tmp_path / "raw"), quarantine_root=str(tmp_path / "quarantine"))
    kafka = FakeKafka(partitions=2)
    opts = LandingOptions(small_file_bytes=10**6, compact_target_bytes=3000, close_after_ms=0,
                          compact_lookback_hours=10**6, keep_log_runs=2)  # fmt: skip
    errors = []
    steps = 0
    for rnd in range(6):
        produce_batch(kafka, rng.randint(1, 9), T0 + rng.randint(0, 3) * HOUR + rnd * 60_000, bad_every=5)
        workers = [Worker(f"{rnd}.{i}", landing_run(fs, paths, kafka, opts, f"{rnd}.{i}")) for i in range(3)]
        while not all(w.finished for w in workers):
            w = rng.choice([w for w in workers if not w.finished])
            if rng.random() < 0.004:
                w.kill()
            else:
                w.step()
            steps += 1
            check_exactly_once(fs, paths, kafka)
        for w in workers:
            if w.error not in (None, "killed") and not isinstance(w.error, ConcurrentRunError):
                errors.append((w.name, w.label, repr(w.error)))
        if rng.random() < 0.5:
            produce_batch(kafka, 2, T0 + rnd * 60_000 + 1)
    assert not errors, errors
    landing.land_topic(fs, paths, kafka, FakeWriter(fs, kafka), opts, "final")
    check_exactly_once(fs, paths, kafka, complete=True)
    print(f"seed {seed}: {steps} steps")
