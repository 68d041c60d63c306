"""The landing's JVM writer (jvm/src/main/java/streamlab/KafkaParquetStager.java) and the job's
slicing, in a local SparkSession (no Kafka, no HDFS: the writer's file code runs on file://).

What matters: its UTF-8 check is Python's, and its files are the files Spark writes for the
Kafka source's columns (the same Parquet schema byte for byte: the compaction concatenates files
and merges their footers only when schemas are equal, and older landings were written by Spark).
"""

from __future__ import annotations

import random
import sys
from datetime import datetime, timezone
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import (
    BinaryType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from streamlab import parquet_footer
from streamlab.config import StackConfig
from tests.conftest import REPO

sys.path.insert(0, str(REPO / "spark_jobs"))
from kafka_to_hdfs_landing import UNDECODABLE, plan_slices  # noqa: E402

HOUR_MS = 3_600_000
T0 = 1_764_000_000_000 - 1_764_000_000_000 % HOUR_MS  # the start of an hour, in ms


def _landed_schema(value_type) -> StructType:
    """The columns the landing keeps of the Kafka source's row (every field nullable there)."""
    return StructType(
        [
            StructField("topic", StringType(), True),
            StructField("partition", IntegerType(), True),
            StructField("offset", LongType(), True),
            StructField("timestamp", TimestampType(), True),
            StructField("timestamp_type", IntegerType(), True),
            StructField("key", BinaryType(), True),
            StructField("value", value_type, True),
        ]
    )


@pytest.fixture(scope="module")
def spark():
    cfg = StackConfig.load()
    jars = [cfg.jars("streamlab") / "streamlab-jvm.jar", *cfg.jars("spark-kafka").glob("kafka-clients-*.jar")]
    missing = [str(j) for j in jars if not j.exists()]
    assert not missing and len(jars) == 2, f"run `make deps` first (missing {missing or 'kafka-clients'})"
    session = (
        SparkSession.builder.master("local[2]")
        .appName("test_kafka_parquet_stager")
        .config("spark.jars", ",".join(map(str, jars)))
        .config("spark.ui.enabled", "false")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")
        .getOrCreate()
    )
    yield session
    session.stop()


def _python_utf8(b: bytes) -> bool:
    try:
        b.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


def test_the_utf8_check_agrees_with_python_on_edge_cases_and_random_bytes(spark):
    utf8 = getattr(spark._jvm.streamlab, "KafkaParquetStager$Utf8")
    cases = [
        b"", b"plain ascii", "données été".encode(), "€ 😀 \U0010ffff \ud7ff \ue000".encode(),
        b"\x80", b"\xbf", b"\xc0\xaf", b"\xc1\xbf", b"\xc2", b"\xc2\x7f", b"\xdf\xbf",
        b"\xe0\x80\xaf", b"\xe0\x9f\xbf", b"\xe0\xa0\x80", b"\xed\x9f\xbf", b"\xed\xa0\x80", b"\xed\xbf\xbf",
        b"\xef\xbf\xbf", b"\xe2\x82", b"\xf0\x8f\xbf\xbf", b"\xf0\x90\x80\x80", b"\xf4\x8f\xbf\xbf",
        b"\xf4\x90\x80\x80", b"\xf5\x80\x80\x80", b"\xf8\x88\x80\x80\x80", b"\xfe", b"\xff", b"ok\xe2\x82\xac\xff",
    ]  # fmt: skip
    rng = random.Random(20261124)
    lead = [0xC2, 0xDF, 0xE0, 0xE1, 0xED, 0xEF, 0xF0, 0xF3, 0xF4, 0xF5]
    for _ in range(2000):
        pick = (lambda: rng.randint(0, 255), lambda: rng.randint(0x80, 0xBF), lambda: rng.choice(lead))
        cases.append(bytes(rng.choice(pick)() for _ in range(rng.randint(1, 7))))
    for _ in range(500):  # valid text of 1- to 4-byte characters, whole and cut anywhere
        cps = [rng.choice((rng.randint(0x20, 0x7F), rng.randint(0x80, 0x7FF), rng.randint(0xE000, 0xFFFF),
                           rng.randint(0x800, 0xD7FF), rng.randint(0x10000, 0x10FFFF))) for _ in range(4)]  # fmt: skip
        text = "".join(map(chr, cps)).encode()
        cases += [text, text[: rng.randint(0, len(text))]]
    wrong = [c for c in cases if utf8.isValid(bytearray(c)) != _python_utf8(c)]
    assert not wrong, wrong[:10]
    assert 500 < sum(map(_python_utf8, cases)) < len(cases) - 1000  # both outcomes are exercised


def _record(jvm, partition: int, offset: int, ts_ms: int, key: bytes | None, value: bytes | None):
    return jvm.org.apache.kafka.clients.consumer.ConsumerRecord(
        "t", partition, offset, ts_ms, jvm.org.apache.kafka.common.record.TimestampType.CREATE_TIME,
        -1, -1, None if key is None else bytearray(key), None if value is None else bytearray(value),
        jvm.org.apache.kafka.common.header.internals.RecordHeaders(), jvm.java.util.Optional.empty(),
    )  # fmt: skip


def _footer(path: Path) -> tuple[bytes, int]:
    data = path.read_bytes()
    return parquet_footer.footer_bytes(lambda o, n: data[o : o + n], len(data)), len(data)


def staging_files(spark, staging: Path, partition: int, first: int, records_per_file: int):
    """The writer's open files of one slice (partition, first offset) under `staging` (file://)."""
    jvm = spark._jvm
    conf = spark._jsc.hadoopConfiguration()
    root = jvm.org.apache.hadoop.fs.Path(staging.as_uri())
    return getattr(jvm.streamlab, "KafkaParquetStager$Files")(
        root.getFileSystem(conf),
        conf,
        root,
        "t",
        partition,
        first,
        records_per_file,
        UNDECODABLE,
        spark.version,
    )


def test_files_are_split_by_hour_and_size_and_have_sparks_schema(spark, tmp_path):
    jvm = spark._jvm
    staging = tmp_path / "staging"
    files = staging_files(spark, staging, partition=3, first=100, records_per_file=2)
    records = [  # (offset, timestamp, key, value, quarantined?)
        (100, T0 + 1, b"k", "données".encode(), False),
        (101, T0 + 2, None, b"b", False),
        (102, T0 + 3, b"k", None, False),  # third of the hour: a second file (2 records a file)
        (103, T0 + HOUR_MS, None, "été".encode(), False),  # the next hour
        (104, T0 + 5, b"x", b"\xff bad", True),
    ]
    for offset, ts, key, value, bad in records:
        files.write(bad, _record(jvm, 3, offset, ts, key, value))
    assert files.closeAll() == 4

    found = sorted(p.relative_to(staging).as_posix() for p in staging.rglob("*") if p.is_file())
    h = T0 // HOUR_MS
    # Hidden in-progress names are gone; Hadoop's local .crc side files are not data.
    assert [f for f in found if not f.endswith(".crc")] == [
        f"quarantine/h={h}/part-3-100-00003.parquet",
        f"raw/h={h}/part-3-100-00000.parquet",
        f"raw/h={h}/part-3-100-00001.parquet",
        f"raw/h={h + 1}/part-3-100-00002.parquet",
    ]
    rows = {}
    for f in staging.rglob("*.parquet"):
        for r in pq.read_table(f).to_pylist():
            rows[r["offset"]] = (f.relative_to(staging).parts[0], r)
    assert sorted(rows) == [100, 101, 102, 103, 104]
    for offset, ts, key, value, bad in records:
        kind, r = rows[offset]
        assert kind == ("quarantine" if bad else "raw")
        assert (r["topic"], r["partition"], r["timestamp_type"], r["key"]) == ("t", 3, 0, key)
        assert r["value"] == (value if bad or value is None else value.decode())
        assert r["timestamp"] == datetime.fromtimestamp(ts / 1000, timezone.utc)
        assert (r.get("reason") == UNDECODABLE) if bad else "reason" not in r

    # The same rows written by Spark: the footers merge (equal schemas), Spark reads the same types.
    raw_ref, bad_ref = tmp_path / "spark-raw", tmp_path / "spark-bad"
    ts0 = datetime.fromtimestamp(T0 / 1000, timezone.utc)
    spark.createDataFrame([("t", 3, 1, ts0, 0, b"k", "v")], _landed_schema(StringType())).coalesce(
        1
    ).write.parquet(str(raw_ref))
    spark.createDataFrame([("t", 3, 1, ts0, 0, b"k", b"\xff")], _landed_schema(BinaryType())).withColumn(
        "reason", F.lit(UNDECODABLE)
    ).coalesce(1).write.parquet(str(bad_ref))
    for ours, ref in (
        (staging / f"raw/h={h}/part-3-100-00000.parquet", raw_ref),
        (staging / f"quarantine/h={h}/part-3-100-00003.parquet", bad_ref),
    ):
        spark_file = next(ref.glob("part-*.parquet"))
        parquet_footer.merged_footer([_footer(ours), _footer(spark_file)])  # raises if schemas differ
        assert spark.read.parquet(str(ours)).schema == spark.read.parquet(str(spark_file)).schema
        meta = pq.ParquetFile(ours).metadata.metadata
        assert meta[b"org.apache.spark.version"] == spark.version.encode()
        assert b"org.apache.spark.sql.parquet.row.metadata" in meta


def test_timestamps_that_name_no_hour_go_to_quarantine_with_the_reason(spark, tmp_path):
    jvm = spark._jvm
    staging = tmp_path / "staging"
    files = staging_files(spark, staging, partition=0, first=0, records_per_file=100)
    run_hour = T0 // HOUR_MS + 5
    files.setQuarantineHour(run_hour)
    last_ms = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z
    cases = [  # (timestamp ms, value, where it goes: 0 raw, 1 undecodable, 2 timestamp)
        (-1, b"no timestamp", 2),
        (0, b"the epoch", 0),
        (1_735_689_600_000_000, b"microseconds as milliseconds: year 56971", 2),
        (last_ms, b"the last millisecond of year 9999", 0),
        (last_ms + 1, b"one more", 2),
        (T0, b"\xff undecodable, usable time", 1),
        (-5, b"\xff undecodable and no time", 2),
    ]
    routed = [files.route(_record(jvm, 0, i, ts, None, v), True) for i, (ts, v, _) in enumerate(cases)]
    assert routed == [where for *_x, where in cases]
    files.closeAll()
    found = sorted(p.relative_to(staging).as_posix() for p in staging.rglob("*.parquet"))
    assert (
        "raw/h=0/part-0-0-00001.parquet" in found
        and f"raw/h={last_ms // HOUR_MS}/part-0-0-00002.parquet" in found
    )
    [bad_time] = [f for f in found if "-ts-" in f]
    assert bad_time.startswith(f"quarantine/h={run_hour}/")
    rows = pq.read_table(staging / bad_time).to_pylist()
    assert [r["offset"] for r in rows] == [0, 2, 4, 6]
    for r in rows:
        ts = cases[r["offset"]][0]
        assert r["timestamp"] is None and r["value"] == cases[r["offset"]][1]
        assert r["reason"].startswith(f"record timestamp {ts} ms names no hour")
    assert landing_hour_dir(last_ms // HOUR_MS) == "dt=9999-12-31/hr=23"


def landing_hour_dir(hours: int) -> str:
    from streamlab import landing

    return landing.destination_hour_dir(f"h={hours}")


def test_a_file_past_the_row_group_size_is_cut_into_row_groups_and_keeps_every_record(spark, tmp_path):
    """The writer drives parquet-mr's column writers itself: row groups are its own bookkeeping."""
    jvm = spark._jvm
    conf = spark._jsc.hadoopConfiguration()
    path = tmp_path / "big.parquet"
    out = jvm.org.apache.parquet.hadoop.util.HadoopOutputFile.fromPath(
        jvm.org.apache.hadoop.fs.Path(path.as_uri()), conf
    )
    writer = getattr(jvm.streamlab, "KafkaParquetStager$RecordFileWriter")(
        out,
        conf,
        "t",
        None,
        spark.version,
        16 * 1024,  # 16 KiB row groups: about 1000 records each
    )
    n = 3500
    create_time = jvm.org.apache.kafka.common.record.TimestampType.CREATE_TIME
    headers, no_epoch = (
        jvm.org.apache.kafka.common.header.internals.RecordHeaders(),
        jvm.java.util.Optional.empty(),
    )
    for i in range(n):
        key = None if i % 3 == 0 else bytearray(f"k{i % 7}".encode())
        value = None if i % 11 == 0 else bytearray(f"{i:06d} données {'x' * (i % 50)}".encode())
        record = jvm.org.apache.kafka.clients.consumer.ConsumerRecord(
            "t", 1, 5000 + i, T0 + i, create_time, -1, -1, key, value, headers, no_epoch
        )
        writer.write(record)
    writer.close()

    meta = pq.ParquetFile(path).metadata
    assert meta.num_rows == n
    assert 3 <= meta.num_row_groups <= 5, meta.num_row_groups
    rows = pq.read_table(path).to_pylist()
    assert [r["offset"] for r in rows] == list(range(5000, 5000 + n))
    for i, r in enumerate(rows):
        assert (r["topic"], r["partition"]) == ("t", 1)  # every row group has its dictionary
        assert r["key"] == (None if i % 3 == 0 else f"k{i % 7}".encode())
        assert r["value"] == (None if i % 11 == 0 else f"{i:06d} données {'x' * (i % 50)}")
        assert r["timestamp"] == datetime.fromtimestamp((T0 + i) / 1000, timezone.utc)
    for g in range(meta.num_row_groups):
        assert "PLAIN_DICTIONARY" in meta.row_group(g).column(0).encodings  # the topic, as Spark's
    # The offsets' min/max per row group stay in the footer (the landing reads them as its index).
    first = meta.row_group(0).column(2).statistics
    assert (first.min, first.max) == (5000, 5000 + meta.row_group(0).num_rows - 1)
    assert spark.read.parquet(str(path)).count() == n


def test_slices_cover_every_planned_offset_once_and_keep_cores_busy():
    assert plan_slices({0: 5, 1: 9}, {0: 5, 1: 10}, 2) == [{"partition": 1, "from": 9, "until": 10}]
    # Small runs: one slice per partition that has something new.
    assert plan_slices({0: 0, 1: 0}, {0: 10, 1: 20}, 8) == [
        {"partition": 0, "from": 0, "until": 10},
        {"partition": 1, "from": 0, "until": 20},
    ]
    # A big run on one partition is cut for every core; a small partition beside it keeps one.
    slices = plan_slices({0: 1000, 1: 0}, {0: 1_001_001, 1: 7}, 4)
    assert len([s for s in slices if s["partition"] == 0]) == 4
    for p, (lo, hi) in {0: (1000, 1_001_001), 1: (0, 7)}.items():
        mine = sorted((s["from"], s["until"]) for s in slices if s["partition"] == p)
        assert mine[0][0] == lo and mine[-1][1] == hi
        assert all(a[1] == b[0] for a, b in zip(mine, mine[1:], strict=False))
        assert all(f < u for f, u in mine)
    assert plan_slices({0: 0}, {0: 0}, 2) == []
