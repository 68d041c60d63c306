"""Unit tests of the streaming word count's transform, on a local SparkSession (no Kafka)."""

from __future__ import annotations

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
