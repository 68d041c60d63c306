"""Where the landing's time goes: the same Kafka range through three paths, in one Spark JVM.

    .venv/bin/python bench/landing_bench.py --keep          # leaves a 5M-record topic, prints it
    bin/spark-submit bench/landing_write_paths.py --topic bench-landing-<id> [--rounds 3]

Paths, each run --rounds times in a row (round 1 of the first path is the cold JVM; give one
path per run, `--paths stager`, to see each one cold):
  spark-source-noop      Spark's Kafka source into Spark's `noop` sink (no Parquet)
  spark-source-parquet   Spark's Kafka source, `df.write.partitionBy(hour).parquet` (the landing's
                         first version)
  stager                 the landing's writer (jvm/src KafkaParquetStager), as the job calls it
Output goes under /bench/write-paths/<id>/ in HDFS and is deleted at the end.
"""

from __future__ import annotations

import argparse
import json
import time
import uuid

from confluent_kafka import Consumer, TopicPartition
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

FETCH = {"kafka.max.partition.fetch.bytes": "16777216", "kafka.fetch.max.bytes": "67108864"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--topic", required=True)
    ap.add_argument("--bootstrap-servers", default="127.0.0.1:9092")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--paths", default="spark-source-noop,spark-source-parquet,stager",
                    help="which paths, in order (one per JVM for a fair cold round)")  # fmt: skip
    args = ap.parse_args()
    spark = SparkSession.builder.appName("landing_write_paths").getOrCreate()
    spark.conf.set("spark.sql.session.timeZone", "UTC")
    spark.conf.set("spark.sql.optimizer.plannedWrite.enabled", "false")
    spark.conf.set("spark.sql.maxConcurrentOutputFileWriters", "64")
    root = f"/bench/write-paths/{uuid.uuid4().hex[:8]}"
    jvm = spark._jvm
    cores = spark.sparkContext.defaultParallelism
    ends: dict[int, tuple[int, int]] = {}  # partition -> (first, end) offsets
    probe = Consumer({"bootstrap.servers": args.bootstrap_servers, "group.id": "landing-write-paths"})
    parts = probe.list_topics(args.topic, timeout=30).topics[args.topic].partitions
    for p in parts:  # the range of each partition, without reading it (no JVM warm-up)
        ends[p] = probe.get_watermark_offsets(TopicPartition(args.topic, p), timeout=30)
    probe.close()
    records = sum(hi - lo for lo, hi in ends.values())

    def source():
        reader = spark.read.format("kafka").option("kafka.bootstrap.servers", args.bootstrap_servers)
        reader = reader.option("subscribe", args.topic).option("minPartitions", str(cores))
        for k, v in FETCH.items():
            reader = reader.option(k, v)
        return reader.option("startingOffsets", "earliest").option("endingOffsets", "latest").load()

    def spark_noop(k: int) -> int:
        source().write.format("noop").mode("overwrite").save()
        return records

    def spark_parquet(k: int) -> int:
        hour = (F.unix_micros("timestamp") / F.lit(3_600_000_000)).cast("long").alias("h")
        df = source().select(
            "topic", "partition", "offset", "timestamp", F.col("timestampType").alias("timestamp_type"),
            "key", F.col("value").cast("string").alias("value"), hour,
        )  # fmt: skip
        df.write.partitionBy("h").parquet(f"{root}/spark-{k}")
        return records

    def stager(k: int) -> int:
        request = {
            "topic": args.topic, "value_format": "text", "staging_dir": f"{root}/stager-{k}",
            "records_per_file": 5_000_000, "fail_on_data_loss": True, "reason": "bench",
            "spark_version": spark.version,
            "kafka": {"bootstrap.servers": args.bootstrap_servers, **{k[6:]: v for k, v in FETCH.items()}},
            "slices": [{"partition": p, "from": lo, "until": hi} for p, (lo, hi) in sorted(ends.items())],
        }  # fmt: skip
        out = json.loads(jvm.streamlab.KafkaParquetStager.stage(spark._jsparkSession, json.dumps(request)))
        for sl in out["slices"]:  # where a task's time went: Kafka's poll (fetch + parse) against the rest
            print(f"  partition {sl['partition']}: task {sl.get('task_ms')} ms, poll {sl.get('poll_ms')} ms, "
                  f"closing files {sl.get('close_ms')} ms", flush=True)  # fmt: skip
        return out["records"]

    print(f"{args.topic}: {records:,} records in {len(ends)} partitions; {cores} cores", flush=True)
    try:
        paths = {"spark-source-noop": spark_noop, "spark-source-parquet": spark_parquet, "stager": stager}
        for name in args.paths.split(","):
            path = paths[name]
            for k in range(args.rounds):
                t = time.monotonic()
                n = path(k)
                took = time.monotonic() - t
                print(f"{name:22} round {k + 1}: {took:6.2f} s  {n / took:>12,.0f} records/s", flush=True)
    finally:
        fs = jvm.org.apache.hadoop.fs.Path(root).getFileSystem(spark._jsc.hadoopConfiguration())
        fs.delete(jvm.org.apache.hadoop.fs.Path(root), True)
        spark.stop()


if __name__ == "__main__":
    main()
