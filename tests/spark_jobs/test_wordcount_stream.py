"""Unit tests of the streaming word count's transform, on a local SparkSession (no Kafka)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

pyspark = pytest.importorskip("pyspark")

from pyspark.sql import Row, SparkSession  # noqa: E402
from pyspark.sql import functions as F  # noqa: E402
from pyspark.sql.types import BinaryType, StructField, StructType  # noqa: E402
from pyspark.testing import assertDataFrameEqual  # noqa: E402

SPARK_JOBS = Path(__file__).resolve().parents[2] / "spark_jobs"
if str(SPARK_JOBS) not in sys.path:  # the jobs are scripts, as spark-submit runs them
    sys.path.insert(0, str(SPARK_JOBS))

import wordcount_stream as job  # noqa: E402

KAFKA_VALUE = StructType([StructField("value", BinaryType(), nullable=True)])
MIB = 1024 * 1024


@pytest.fixture(scope="module")
def spark():
    """A local SparkSession for this module, stopped at the end (its py4j threads too)."""
    session = (
        SparkSession.builder.master("local[2]")
        .appName("test_wordcount_stream")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.ui.enabled", "false")
        .getOrCreate()
    )
    yield session
    session.stop()


def records(spark: SparkSession, *values: bytes | None):
    """Kafka-like records: one binary `value` column, as the Kafka source delivers it."""
    return spark.createDataFrame([(v,) for v in values], KAFKA_VALUE)


def test_counts_english_and_french_lines(spark):
    df = records(
        spark,
        b"Hello kafka and zookeeper!",
        "Données d'été, été 2024.".encode(),
        b"HELLO hello_world 42 x42",
    )

    assertDataFrameEqual(
        job.running_totals(df),
        [
            Row(word="hello", count=3),
            Row(word="kafka", count=1),
            Row(word="and", count=1),
            Row(word="zookeeper", count=1),
            Row(word="données", count=1),
            Row(word="d", count=1),
            Row(word="été", count=2),
            Row(word="2024", count=1),
            Row(word="world", count=1),
            Row(word="42", count=1),
            Row(word="x42", count=1),
        ],
    )


def test_null_values_and_empty_lines_have_no_words(spark):
    df = records(spark, None, b"", b"   ", b"!?,;-- ...", None, b"ok")

    assertDataFrameEqual(job.running_totals(df), [Row(word="ok", count=1)])


def test_only_bad_input_gives_an_empty_result(spark):
    df = records(spark, None, b"", b"\xff\xfe")

    assert job.running_totals(df).collect() == []


def test_invalid_utf8_becomes_replacement_char(spark):
    df = records(spark, b"ab\xffcd", b"caf\xc3 \xe2\x82ok", b"\xc3\xa9t\xc3\xa9")

    assertDataFrameEqual(
        job.decode_lines(df),
        [Row(value="ab\ufffdcd"), Row(value="caf\ufffd \ufffdok"), Row(value="été")],
    )


def test_invalid_utf8_separates_words(spark):
    df = records(spark, b"ab\xffcd", b"caf\xc3 \xe2\x82ok", b"\xc3\xa9t\xc3\xa9 AB")

    assertDataFrameEqual(
        job.running_totals(df),
        [
            Row(word="ab", count=2),
            Row(word="cd", count=1),
            Row(word="caf", count=1),
            Row(word="ok", count=1),
            Row(word="été", count=1),
        ],
    )


def test_one_mib_line_of_words(spark):
    line = b"lorem ipsum, " * 80_660 + b"end"
    assert len(line) > MIB

    assertDataFrameEqual(
        job.running_totals(records(spark, line, b"lorem")),
        [
            Row(word="lorem", count=80_661),
            Row(word="ipsum", count=80_660),
            Row(word="end", count=1),
        ],
    )


def test_word_up_to_the_byte_limit_is_counted_a_longer_one_is_not(spark):
    df = records(spark, b"Z" * MIB, b"y" * 1_000_000, b"Y" * 1_000_000, b"short")

    result = job.running_totals(df).select(F.length("word").alias("length"), "count")

    assertDataFrameEqual(result, [Row(length=1_000_000, count=2), Row(length=5, count=1)])


def test_byte_limit_counts_utf8_bytes_not_characters(spark):
    df = records(spark, "été abcd ab".encode())  # "été" is 3 characters, 5 bytes

    assertDataFrameEqual(
        job.running_totals(df, max_word_bytes=5),
        [Row(word="été", count=1), Row(word="abcd", count=1), Row(word="ab", count=1)],
    )
    assertDataFrameEqual(
        job.running_totals(df, max_word_bytes=4), [Row(word="abcd", count=1), Row(word="ab", count=1)]
    )


def test_kafka_records_are_word_keys_and_decimal_counts(spark):
    totals = spark.createDataFrame([("été", 3), ("kafka", 1_234_567_890_123)], "word string, count long")

    result = job.to_kafka_records(totals)

    assert [f.name for f in result.schema.fields] == ["key", "value"]
    assertDataFrameEqual(
        result,
        [Row(key="été", value="3"), Row(key="kafka", value="1234567890123")],
    )


def test_running_totals_accumulate_across_micro_batches(spark, tmp_path):
    """On a streaming DataFrame each micro-batch emits the new totals of the words it saw."""
    source = tmp_path / "in"
    source.mkdir()
    lines = spark.readStream.format("text").load(str(source))
    query = (
        job.running_totals(lines)
        .writeStream.outputMode("update")
        .format("memory")
        .queryName("wc_update_test")
        .option("checkpointLocation", str(tmp_path / "checkpoint"))
        .start()
    )

    def add_file(name: str, text: str) -> None:  # renamed in, so never read half-written
        (tmp_path / name).write_text(text, encoding="utf-8")
        (tmp_path / name).rename(source / name)

    try:
        add_file("1.txt", "Hello kafka\nhello\n\n")
        query.processAllAvailable()
        add_file("2.txt", "kafka, Kafka! spark\n")
        query.processAllAvailable()
    finally:
        query.stop()

    emitted = spark.sql("select * from wc_update_test")
    assertDataFrameEqual(
        emitted,
        [
            Row(word="hello", count=2),  # batch 0
            Row(word="kafka", count=1),  # batch 0
            Row(word="kafka", count=3),  # batch 1: the running total, not the batch's 2
            Row(word="spark", count=1),  # batch 1
        ],
    )


def test_default_checkpoint_is_per_group_id():
    args = job.parse_args(["127.0.0.1:9092", "Hello-Kafka", "wordcount"])

    assert args.checkpoint == "/checkpoints/wordcount_stream/wordcount"
    assert args.output_topic == "wordcounts"
    assert not args.console and args.console_file is None
    assert args.max_word_bytes == 1_000_000


def test_explicit_options_are_kept():
    args = job.parse_args(
        ["k:9092", "a,b", "g", "--output-topic", "out", "--checkpoint", "file:///tmp/c", "--console"]
    )

    assert (args.topics, args.output_topic, args.checkpoint) == ("a,b", "out", "file:///tmp/c")
    assert args.console


def test_console_table_is_the_console_sinks_largest_first(spark, tmp_path):
    totals = spark.createDataFrame([("kafka", 1), ("hello", 2), ("and", 1)], "word string, count long")
    out = tmp_path / "out"

    job._print_table(totals, 3, 20, str(out))
    job._print_table(totals.limit(0), 4, 20, str(out))

    assert out.read_text(encoding="utf-8") == (
        "-------------------------------------------\n"
        "Batch: 3\n"
        "-------------------------------------------\n"
        "+-----+-----+\n"
        "| word|count|\n"
        "+-----+-----+\n"
        "|hello|    2|\n"
        "|  and|    1|\n"
        "|kafka|    1|\n"
        "+-----+-----+\n"
        "\n"
        "-------------------------------------------\n"
        "Batch: 4\n"
        "-------------------------------------------\n"
        "+----+-----+\n"
        "|word|count|\n"
        "+----+-----+\n"
        "+----+-----+\n"
        "\n"
    )


# ---- the consumer group <group-id>: progress -> (offsets, metadata) -------------------------------

# A progress event as Spark 4 writes it (StreamingQueryProgress.json), Kafka source on two topics.
PROGRESS = {
    "id": "0b5e3e8a-3f9c-4c0b-9d3e-0d2f6f0c1a11",
    "runId": "5a1f1c2e-7b7d-4a8b-8f57-6a0f4c7d9e22",
    "name": "wordcount_stream",
    "timestamp": "2026-01-02T03:04:05.678Z",
    "batchId": 42,
    "batchDuration": 310,
    "numInputRows": 1500,
    "inputRowsPerSecond": 1234.5678,
    "processedRowsPerSecond": 4838.709677419355,
    "durationMs": {"addBatch": 250, "latestOffset": 3, "triggerExecution": 310, "walCommit": 20},
    "stateOperators": [],
    "sources": [
        {
            "description": "KafkaV2[Subscribe[Hello-Kafka,other]]",
            "startOffset": {"Hello-Kafka": {"0": 100, "1": 7}, "other": {"0": 0}},
            "endOffset": {"Hello-Kafka": {"0": 1590, "1": 17}, "other": {"0": 3}},
            "latestOffset": {"Hello-Kafka": {"0": 1590, "1": 17}, "other": {"0": 3}},
            "numInputRows": 1500,
        }
    ],
    "sink": {"description": "org.apache.spark.sql.kafka010.KafkaSourceProvider$KafkaSink@1"},
}


def test_progress_commit_gives_end_offsets_and_compact_metadata():
    offsets, metadata = job.progress_commit(PROGRESS)
    assert offsets == {"Hello-Kafka": {0: 1590, 1: 17}, "other": {0: 3}}
    assert len(metadata.encode()) <= 4096 and " " not in metadata
    assert json.loads(metadata) == {
        "batch": 42,
        "ts": 1767323045678,  # 2026-01-02T03:04:05.678Z
        "in_rps": 1234.6,
        "proc_rps": 4838.7,
        "batch_ms": 310,
        "rows": 1500,
    }


def test_progress_commit_reads_pyspark_objects_with_end_offsets_as_json_strings():
    """pyspark's StreamingQueryProgress / SourceProgress carry endOffset as a JSON string."""
    progress = dict(PROGRESS, sources=[dict(PROGRESS["sources"][0], endOffset='{"Hello-Kafka":{"0":1590}}')])
    offsets, _ = job.progress_commit(progress)
    assert offsets == {"Hello-Kafka": {0: 1590}}


def test_idle_progress_keeps_the_offsets_with_fresh_metadata():
    """No new data: Spark reports about every 10 s, with the last batch's offsets and no rates."""
    idle = {
        **PROGRESS,
        "timestamp": "2026-01-02T03:04:15.678Z",
        "numInputRows": 0,
        "durationMs": {"latestOffset": 2, "triggerExecution": 2},
    }
    del idle["inputRowsPerSecond"], idle["processedRowsPerSecond"]  # Spark leaves NaN out
    offsets, metadata = job.progress_commit(idle)
    assert offsets == job.progress_commit(PROGRESS)[0]
    meta = json.loads(metadata)
    assert meta["ts"] == 1767323055678 and meta["rows"] == 0 and meta["batch_ms"] == 2
    assert meta["in_rps"] is None and meta["proc_rps"] is None
    nan = dict(PROGRESS, inputRowsPerSecond=float("nan"))  # pyspark's object keeps NaN
    assert json.loads(job.progress_commit(nan)[1])["in_rps"] is None


def test_progress_without_kafka_end_offsets_commits_nothing():
    assert job.progress_commit({**PROGRESS, "sources": []}) is None
    assert (
        job.progress_commit({**PROGRESS, "sources": [dict(PROGRESS["sources"][0], endOffset=None)]}) is None
    )
    assert (
        job.progress_commit({**PROGRESS, "sources": [dict(PROGRESS["sources"][0], endOffset="null")]}) is None
    )
    rate = {"description": "RateStreamV2[...]", "endOffset": "12"}
    assert job.progress_commit({**PROGRESS, "sources": [rate]}) is None


class _FakeJvmProgress:
    def __init__(self, progress):
        self.text = json.dumps(progress)

    def json(self):
        return self.text


class _FakeQuery:
    """What GroupMirror reads: the JVM query's last progress."""

    def __init__(self):
        self.progress = None
        self._jsq = self

    def lastProgress(self):  # noqa: N802 - the JVM method's name
        return None if self.progress is None else _FakeJvmProgress(self.progress)


class _FakeSpark:
    def __init__(self):
        self.lines = []
        outer = self

        class _Err:
            @staticmethod
            def println(line):
                outer.lines.append(line)

        self._jvm = type("Jvm", (), {"System": type("System", (), {"err": _Err})})


class _FakeCommitter:
    def __init__(self):
        self.commits, self.fail = [], None

    def commit(self, offsets, metadata=None):
        if self.fail:
            raise job.kafka_groups.GroupCommitError(self.fail)
        self.commits.append((offsets, json.loads(metadata)))


def test_group_mirror_commits_each_new_progress_once_and_survives_failures():
    spark, query, committer = _FakeSpark(), _FakeQuery(), _FakeCommitter()
    mirror = job.GroupMirror(spark, committer)
    assert mirror.poll(query) is False  # no progress yet
    query.progress = PROGRESS
    assert mirror.poll(query) is True
    assert mirror.poll(query) is False  # the same event: not committed twice
    assert committer.commits == [
        ({"Hello-Kafka": {0: 1590, 1: 17}, "other": {0: 3}}, committer.commits[0][1])
    ]
    assert committer.commits[0][1]["batch"] == 42

    idle = {**PROGRESS, "timestamp": "2026-01-02T03:04:15.678Z", "numInputRows": 0}
    query.progress = idle  # same batch id, same offsets, a new event: committed (the job is alive)
    assert mirror.poll(query) is True
    assert committer.commits[-1][0] == committer.commits[0][0]
    assert committer.commits[-1][1]["ts"] > committer.commits[0][1]["ts"]

    committer.fail = "group 'g': _WAIT_COORD: Local: Waiting for coordinator"
    query.progress = {**PROGRESS, "batchId": 43, "timestamp": "2026-01-02T03:04:20.000Z"}
    assert mirror.poll(query) is False and mirror.poll(query) is False  # no exception
    warnings = [line for line in spark.lines if "WARNING" in line]
    assert len(warnings) == 1 and "Waiting for coordinator" in warnings[0]  # not one per poll
    committer.fail = None
    assert mirror.poll(query) is True  # the failed event is committed once Kafka answers again
    assert committer.commits[-1][1]["batch"] == 43
    assert "works again" in spark.lines[-1]


def test_group_commits_are_on_by_default_and_can_be_turned_off():
    assert job.parse_args(["h:9092", "t", "g"]).commit_every == 1.0
    assert job.parse_args(["h:9092", "t", "g", "--commit-every", "0"]).commit_every == 0.0
