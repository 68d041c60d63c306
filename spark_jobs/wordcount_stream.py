"""Streaming word count: Kafka text lines -> running totals on a compacted Kafka topic.

The lab's job, kept alive by DAG `streaming_wordcount`. By hand, against the local stack
(`eval "$(.venv/bin/python -m streamlab.stack env)"` first, or use the `bin/` wrappers):

    spark-submit --name wordcount_stream --py-files .deps/python/streamlab.zip \\
        spark_jobs/wordcount_stream.py 127.0.0.1:9092 Hello-Kafka mySparkConsumerGroup --console >> out

    positional: <bootstrap-servers> <subscribe-topics (comma-separated)> <group-id>
    --output-topic wordcounts     compacted topic of running totals (key word, value "count")
    --checkpoint PATH             default /checkpoints/wordcount_stream/<group-id>, on the default
                                  file system (HDFS in the stack: spark.hadoop.fs.defaultFS)
    --console                     also print each micro-batch's updated totals as a table
    --console-file PATH           the same table, appended to PATH ($VARS and ~ expanded)
    --trigger 0s                  micro-batch interval ("0s": next batch as soon as one ends)
    --starting-offsets earliest   where a brand-new checkpoint starts reading
    --min-partitions N            split the input into at least N Spark tasks per batch
    --wait-topic 120              seconds to wait for the output topic to be provisioned
    --max-word-bytes 1000000      longer "words" are not counted (they could not be Kafka keys)
    --progress-every 60           seconds between progress lines (batch durations) on stderr
    --commit-every 1              seconds between checks for a new progress event, whose end
                                  offsets go to the consumer group <group-id>; 0: no group commits

What it computes: words are maximal runs of Unicode letters and digits after lower-casing
(streamlab/textproc.py, shipped in the package archive `.deps/python/streamlab.zip` that
`make deps` packs). Bad input is data, never an error: a null value or an empty line has no
words, invalid UTF-8 bytes become U+FFFD (which separates words), a 1 MiB line is counted like
any other; only a single "word" longer than --max-word-bytes is left out (docs/streaming.md).

Exactness: one streaming aggregation in "update" mode; each micro-batch writes, for every word
it saw, the word's new running total. Offsets and aggregation state live in the checkpoint,
so a restart after kill -9 resumes where the last committed micro-batch ended (see
`write_totals` for why a replayed micro-batch cannot make the latest value wrong).

Lag in Kafka's tools: Spark keeps its offsets in the checkpoint and its own consumers use the
group prefix `<group-id>-`, so the driver mirrors the end offsets of each finished micro-batch
(and of the idle progress events, every ~10 s without data) to the consumer group `<group-id>`,
with the batch's progress as the commit's metadata (`progress_commit`; docs/streaming.md).
`bin/kafka-consumer-groups.sh --describe --group <group-id>` then shows the job's LAG.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Mapping, Sequence
from datetime import datetime

from pyspark import SparkConf
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.streaming import DataStreamWriter, StreamingQuery

from streamlab import kafka_groups
from streamlab.textproc import words

APP_NAME = "wordcount_stream"
DEFAULT_OUTPUT_TOPIC = "wordcounts"
DEFAULT_CHECKPOINT_ROOT = "/checkpoints/wordcount_stream"
# A word becomes a Kafka key: with Kafka's default record limit (max.message.bytes 1,048,588)
# a key of up to 1,000,000 bytes still fits with its value and the record overhead. A longer
# "word" (a line of letters with no separator) could never be written: left uncounted, it
# cannot turn into a poison record that fails every replay of its micro-batch.
DEFAULT_MAX_WORD_BYTES = 1_000_000

# Tuned for a small machine (2 cores) and sub-second latency. They only take effect when the
# session is created here (spark-submit); `--conf` on the command line still wins.
SPARK_CONF: dict[str, str] = {
    # Few, cheap state partitions: each one is a state store (files in the checkpoint) touched
    # by every micro-batch. Fixed by the checkpoint once the query has started.
    "spark.sql.shuffle.partitions": "2",
    # RocksDB keeps the state off the JVM heap (it grows with the vocabulary), and changelog
    # checkpointing uploads only the changed keys per micro-batch instead of a full snapshot.
    "spark.sql.streaming.stateStore.providerClass": (
        "org.apache.spark.sql.execution.streaming.state.RocksDBStateStoreProvider"
    ),
    "spark.sql.streaming.stateStore.rocksdb.changelogCheckpointing.enabled": "true",
    # Streaming tasks are tiny and frequent: do not wait for data locality.
    "spark.locality.wait": "0s",
    # Each micro-batch closes a few small files in the checkpoint (offset log, state changelog per
    # partition, commit log). On close the HDFS client asks the NameNode to complete the file and,
    # while the DataNode's block report is not in yet, sleeps 400 ms (the default) before asking
    # again: that sleep alone made most batches 1 s+ and p50 latency 1.4 s. 20 ms: p50 0.35 s.
    "spark.hadoop.dfs.client.block.write.locateFollowingBlock.initial.delay.ms": "20",
    # Adaptive execution does not apply to streaming queries; off, without a warning each start.
    "spark.sql.adaptive.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    # The driver runs for days: bound what it keeps. RocksDB's memtables and block cache (64 MiB
    # memtables per store instance by default) share one budget off the heap; the UI keeps the
    # last 100 micro-batches' jobs and queries instead of 1,000 (each holds its plan's metrics).
    "spark.sql.streaming.stateStore.rocksdb.boundedMemoryUsage": "true",
    "spark.sql.streaming.stateStore.rocksdb.maxMemoryUsageMB": "64",
    "spark.ui.retainedJobs": "100",
    "spark.ui.retainedStages": "100",
    "spark.ui.retainedTasks": "10000",
    "spark.sql.ui.retainedExecutions": "100",
}


def log(spark: SparkSession, message: str) -> None:
    """A status line on the driver JVM's stderr, next to Spark's own log.

    Not Python's stderr: spark-submit merges the python driver's stderr into its stdout, which
    must carry the console table only (the lab appends it to a file with `>> out`).
    """
    spark._jvm.System.err.println(f"{APP_NAME}: {message}")


# ---------------------------------------------------------------------------------------------
# Transform (pure: DataFrame -> DataFrame, works on batch and streaming DataFrames alike)
# ---------------------------------------------------------------------------------------------
def decode_lines(records: DataFrame) -> DataFrame:
    """Kafka records (binary `value`) -> one string column `value`, always valid UTF-8.

    Invalid byte sequences become U+FFFD (not a letter or digit, so it separates words);
    a null value stays null (streamlab.textproc treats it as a line without words).
    """
    return records.select(F.make_valid_utf8(F.col("value").cast("string")).alias("value"))


def running_totals(records: DataFrame, max_word_bytes: int = DEFAULT_MAX_WORD_BYTES) -> DataFrame:
    """Kafka records -> `word` (string), `count` (long): totals over every record read.

    Words longer than `max_word_bytes` in UTF-8 are not counted (see DEFAULT_MAX_WORD_BYTES).
    """
    occurrences = words(decode_lines(records), "value")
    return occurrences.where(F.octet_length("word") <= max_word_bytes).groupBy("word").count()


def to_kafka_records(totals: DataFrame) -> DataFrame:
    """`word`, `count` -> Kafka `key` (the word, UTF-8) and `value` (the count in decimal)."""
    return totals.select(
        F.col("word").alias("key"),
        F.col("count").cast("string").alias("value"),
    )


# ---------------------------------------------------------------------------------------------
# Extract and load
# ---------------------------------------------------------------------------------------------
def read_lines(spark: SparkSession, args: argparse.Namespace) -> DataFrame:
    """The input topics as a streaming DataFrame of Kafka records."""
    reader = (
        spark.readStream.format("kafka")
        .option("kafka.bootstrap.servers", args.bootstrap_servers)
        .option("subscribe", args.topics)
        # Spark tracks offsets in its checkpoint, not in Kafka; the group id only names the
        # consumers (in broker logs, quotas, ACLs). A prefix keeps each query's group unique.
        .option("groupIdPrefix", f"{args.group_id}-")
        .option("startingOffsets", args.starting_offsets)
        # No maxOffsetsPerTrigger: a micro-batch takes whatever arrived, so a backlog is
        # absorbed in a few large batches instead of many small ones.
        # Records deleted by retention before they were read must not stop the job.
        .option("failOnDataLoss", "false")
        # Large lines: a fetch may carry records up to this size (the broker limit rules).
        .option("kafka.max.partition.fetch.bytes", str(16 * 1024 * 1024))
    )
    if args.min_partitions:
        reader = reader.option("minPartitions", str(args.min_partitions))
    return reader.load()


def wait_for_output_topic(spark: SparkSession, args: argparse.Namespace) -> None:
    """Wait until the output topic exists, so that the job never creates it by accident.

    A Kafka producer writing to a missing topic makes the broker auto-create it (when allowed)
    with default configs, i.e. NOT compacted. Topics are provisioned by `kafka_topics_provision`;
    if the topic is still missing after --wait-topic seconds, exit non-zero (Airflow retries).
    """
    jvm = spark._jvm
    props = jvm.java.util.Properties()
    props.put("bootstrap.servers", args.bootstrap_servers)
    admin = jvm.org.apache.kafka.clients.admin.Admin.create(props)
    seconds = jvm.java.util.concurrent.TimeUnit.SECONDS
    deadline = time.monotonic() + args.wait_topic
    try:
        while True:
            try:
                if admin.listTopics().names().get(10, seconds).contains(args.output_topic):
                    break
            except Exception as err:  # broker not reachable yet: same as "not there yet"
                log(spark, f"listing topics failed: {err}")
            if time.monotonic() > deadline:
                raise SystemExit(
                    f"{APP_NAME}: output topic {args.output_topic!r} does not exist after "
                    f"{args.wait_topic} s: provision it first (DAG kafka_topics_provision)"
                )
            log(spark, f"waiting for topic {args.output_topic!r}")
            time.sleep(2)
        resource = jvm.org.apache.kafka.common.config.ConfigResource(
            jvm.org.apache.kafka.common.config.ConfigResource.Type.TOPIC, args.output_topic
        )
        configs = admin.describeConfigs(jvm.java.util.Collections.singleton(resource)).all().get(30, seconds)
        policy = configs.get(resource).get("cleanup.policy").value()
        if "compact" not in policy:
            log(
                spark,
                f"WARNING topic {args.output_topic!r} has cleanup.policy={policy}: "
                "old counts are deleted by retention instead of compacted",
            )
    finally:
        admin.close()


def _print_table(totals: DataFrame, batch_id: int, rows: int, path: str | None) -> None:
    """The console sink's table of one micro-batch's updated totals, to stdout or a file."""
    table = totals.orderBy(F.desc("count"), "word")._show_string(rows, truncate=True)
    text = (
        "-------------------------------------------\n"
        f"Batch: {batch_id}\n"
        "-------------------------------------------\n"
        f"{table}\n"
    )
    if path:
        with open(path, "a", encoding="utf-8") as out:
            out.write(text)
    else:
        sys.stdout.write(text)
        sys.stdout.flush()


def write_totals(totals: DataFrame, args: argparse.Namespace) -> StreamingQuery:
    """Upsert the running totals into the output topic (and print them if asked).

    Why the latest value per key is exact, even after kill -9:
    - Each micro-batch N is planned by first writing its offset range to the checkpoint's
      offset log; the aggregation state after N is committed as state version N, and batch N
      is marked done in the commit log only after its Kafka writes were flushed and acked.
    - After a crash, Spark replays the last planned but uncommitted batch N with the SAME
      offset range on top of the SAME state version N-1, so it recomputes exactly the same
      totals and rewrites the same (word, total) pairs: duplicates of a value, never a
      different value. Nothing is counted twice (the state is not advanced twice) and nothing
      is missed (the next batch starts at N's end offset).
    - Within a batch each word appears once; the Kafka partition of a record depends on its
      key only, the producer is idempotent, and batch N+1 starts only after N's writes were
      acked, so for each word the last record in the topic is the total after the last batch:
      the exact count of everything read. Compaction keeps exactly that record.
    """
    kafka_options = {
        "kafka.bootstrap.servers": args.bootstrap_servers,
        "topic": args.output_topic,
        # A word can be as long as a line: allow records as large as the broker accepts.
        "kafka.max.request.size": str(16 * 1024 * 1024),
        "kafka.acks": "all",
        "kafka.enable.idempotence": "true",
    }
    console_file = _prepare_file(totals.sparkSession, args.console_file) if args.console_file else None
    if not (args.console or console_file):
        sink = _stream_writer(to_kafka_records(totals), args)
        return sink.format("kafka").options(**kafka_options).start()

    def kafka_and_console(batch: DataFrame, batch_id: int) -> None:
        # Cached so that the Kafka write and the table do not recompute the stateful batch.
        batch.persist()
        try:
            to_kafka_records(batch).write.format("kafka").options(**kafka_options).save()
            if args.console:
                _print_table(batch, batch_id, args.console_rows, None)
            if console_file:
                _print_table(batch, batch_id, args.console_rows, console_file)
        finally:
            batch.unpersist()

    return _stream_writer(totals, args).foreachBatch(kafka_and_console).start()


def _stream_writer(df: DataFrame, args: argparse.Namespace) -> DataStreamWriter:
    return (
        df.writeStream.outputMode("update")
        .queryName(APP_NAME)
        .option("checkpointLocation", args.checkpoint)
        .trigger(processingTime=args.trigger)
    )


def _prepare_file(spark: SparkSession, path: str) -> str | None:
    """Expand ~ and $VARS in a --console-file path and create its folder.

    None (with a warning) when a variable is not set: a missing console file must not stop
    the counting.
    """
    expanded = os.path.expanduser(os.path.expandvars(path))
    if "$" in expanded:
        log(spark, f"--console-file {path!r}: a variable is not set, no console file")
        return None
    os.makedirs(os.path.dirname(os.path.abspath(expanded)), exist_ok=True)
    return expanded


def report_progress(spark: SparkSession, query: StreamingQuery, last_batch: int) -> int:
    """One log line about the micro-batches since `last_batch`; returns the newest batch id."""
    batches = [p for p in query.recentProgress if p["batchId"] > last_batch and p["numInputRows"]]
    newest = max((p["batchId"] for p in query.recentProgress), default=last_batch)
    if not batches:
        return newest

    def ms(key: str) -> str:
        values = sorted(p["durationMs"].get(key, 0) for p in batches)
        return f"{key} p50 {values[len(values) // 2]} max {values[-1]} ms"

    rows = sum(p["numInputRows"] for p in batches)
    log(
        spark,
        f"{len(batches)} batches up to #{newest}, {rows} lines; "
        + "; ".join(ms(k) for k in ("triggerExecution", "addBatch", "walCommit", "commitOffsets")),
    )
    return newest


# ---------------------------------------------------------------------------------------------
# The consumer group <group-id>: lag in Kafka's tools, progress for the UI
# ---------------------------------------------------------------------------------------------
def _iso_ms(timestamp: str | None) -> int | None:
    """Spark's progress timestamp ("2026-01-02T03:04:05.678Z") in epoch milliseconds."""
    if not timestamp:
        return None
    try:
        return int(datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp() * 1000)
    except ValueError:
        return None


def _rate(value: object) -> float | None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        return None  # Spark leaves NaN rates out of its JSON (no batch yet); None in Python
    return round(float(value), 1)


def progress_commit(progress: Mapping) -> tuple[dict[str, dict[int, int]], str] | None:
    """A StreamingQueryProgress (its JSON as a dict, or pyspark's object) -> what to commit to the
    group: ({topic: {partition: end offset}}, metadata JSON), or None if no Kafka source has an
    end offset yet.

    The end offsets are those of the micro-batch the progress reports (for an idle progress, the
    last batch's): the next offset to read, as a consumer group stores it. The metadata, the same
    for every partition, is the compact JSON documented in docs/streaming.md:
    {"batch": id, "ts": progress time (epoch ms), "in_rps": input rows/s, "proc_rps": processed
    rows/s, "batch_ms": triggerExecution ms, "rows": input rows of the batch}."""
    offsets: dict[str, dict[int, int]] = {}
    for source in progress.get("sources") or []:
        end = source.get("endOffset")
        if isinstance(end, str):
            try:
                end = json.loads(end)
            except ValueError:
                continue
        if not isinstance(end, dict):
            continue  # not started yet ("null"), or not a Kafka source
        for topic, parts in end.items():
            if not isinstance(parts, dict):
                continue
            for p, o in parts.items():
                if isinstance(o, int) and not isinstance(o, bool) and o >= 0 and str(p).lstrip("-").isdigit():
                    offsets.setdefault(topic, {})[int(p)] = o
    if not offsets:
        return None
    durations = progress.get("durationMs") or {}
    metadata = kafka_groups.encode_metadata(
        {
            "batch": progress.get("batchId"),
            "ts": _iso_ms(progress.get("timestamp")),
            "in_rps": _rate(progress.get("inputRowsPerSecond")),
            "proc_rps": _rate(progress.get("processedRowsPerSecond")),
            "batch_ms": durations.get("triggerExecution"),
            "rows": progress.get("numInputRows"),
        }
    )
    return offsets, metadata


class GroupMirror:
    """Commits the newest progress event's end offsets to the consumer group <group-id>.

    Polled from the driver's loop. A failed commit is a warning on the driver's stderr (at most
    one a minute while it keeps failing) and the job goes on; the next progress commits again."""

    def __init__(self, spark: SparkSession, committer: kafka_groups.GroupCommitter):
        self.spark, self.committer = spark, committer
        self.last_key: tuple | None = None
        self.failing_since: float | None = None
        self.warned_at = 0.0

    def poll(self, query: StreamingQuery) -> bool:
        """Commit if a new progress event (a finished batch, or an idle event) appeared."""
        # The JVM's last progress as JSON: two py4j calls, where pyspark's `lastProgress` object
        # costs one call per field, every second.
        jprogress = query._jsq.lastProgress()
        if jprogress is None:
            return False
        progress = json.loads(jprogress.json())
        key = (progress.get("batchId"), progress.get("timestamp"))
        if key == self.last_key:
            return False
        commit = progress_commit(progress)
        if commit is None:
            self.last_key = key
            return False
        try:
            self.committer.commit(*commit)
        except kafka_groups.GroupCommitError as e:
            now = time.monotonic()
            if self.failing_since is None:
                self.failing_since = now
            if now - self.warned_at >= 60:
                self.warned_at = now
                log(self.spark, f"WARNING committing the offsets of batch {key[0]} to the consumer "
                                f"group failed (the job goes on; retried at the next progress): {e}")  # fmt: skip
            return False  # last_key unchanged: the same progress is committed at the next poll
        if self.failing_since is not None:
            log(self.spark, f"committing to the consumer group works again (batch {key[0]})")
            self.failing_since, self.warned_at = None, 0.0
        self.last_key = key
        return True


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------
def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog=APP_NAME, description=__doc__.splitlines()[0])
    p.add_argument("bootstrap_servers", help="Kafka bootstrap servers, host:port[,host:port]")
    p.add_argument("topics", help="input topics, comma-separated")
    p.add_argument("group_id", help="names the job: consumer group prefix and checkpoint folder")
    p.add_argument("--output-topic", default=DEFAULT_OUTPUT_TOPIC)
    p.add_argument(
        "--checkpoint",
        help=f"checkpoint folder (default {DEFAULT_CHECKPOINT_ROOT}/<group-id>)",
    )
    p.add_argument("--console", action="store_true", help="print updated totals to stdout")
    p.add_argument("--console-file", help="append the same table to this file")
    p.add_argument("--console-rows", type=int, default=20, help="rows per table (default 20)")
    p.add_argument("--trigger", default="0 seconds", help='micro-batch interval, e.g. "1 second"')
    p.add_argument(
        "--starting-offsets",
        default="earliest",
        help="earliest|latest: where a new checkpoint starts (ignored when resuming)",
    )
    p.add_argument("--min-partitions", type=int, help="minimum Spark tasks reading per batch")
    p.add_argument(
        "--progress-every",
        type=float,
        default=60.0,
        help="seconds between progress lines on stderr (micro-batch durations); 0: none",
    )
    p.add_argument(
        "--commit-every",
        type=float,
        default=1.0,
        help="seconds between checks for a new micro-batch, whose end offsets are committed to "
        "the consumer group <group-id> (for Kafka's tools); 0: no group commits",
    )
    p.add_argument(
        "--max-word-bytes",
        type=int,
        default=DEFAULT_MAX_WORD_BYTES,
        help=f"longer words are not counted (default {DEFAULT_MAX_WORD_BYTES:,})",
    )
    p.add_argument(
        "--wait-topic",
        type=float,
        default=120.0,
        help="seconds to wait for the output topic to exist (default 120)",
    )
    args = p.parse_args(argv)
    if not args.checkpoint:
        args.checkpoint = f"{DEFAULT_CHECKPOINT_ROOT}/{args.group_id}"
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    conf = SparkConf()  # holds spark-submit's --conf and spark-defaults.conf: they win
    for key, value in SPARK_CONF.items():
        conf.setIfMissing(key, value)
    conf.setIfMissing("spark.app.name", APP_NAME)
    spark = SparkSession.builder.config(conf=conf).getOrCreate()
    spark.sparkContext.setLogLevel("WARN")

    wait_for_output_topic(spark, args)
    query = write_totals(running_totals(read_lines(spark, args), args.max_word_bytes), args)
    log(spark, f"reading {args.topics} -> {args.output_topic}, checkpoint {args.checkpoint}")
    mirror = None
    if args.commit_every > 0:
        mirror = GroupMirror(
            spark, kafka_groups.GroupCommitter(args.bootstrap_servers, args.group_id, timeout_s=5)
        )
    ticks = [t for t in (args.commit_every, args.progress_every) if t > 0]
    if ticks:
        seen = -1
        next_report = time.monotonic() + args.progress_every
        while not query.awaitTermination(min(ticks)):
            if mirror is not None:
                mirror.poll(query)
            if args.progress_every > 0 and time.monotonic() >= next_report:
                seen = report_progress(spark, query, seen)
                next_report = time.monotonic() + args.progress_every
    query.awaitTermination()  # raises if the query failed: the process exits non-zero


if __name__ == "__main__":
    main()
