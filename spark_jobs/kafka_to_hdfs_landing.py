"""Land Kafka topics into HDFS as Parquet, exactly once for any plain reader of the folders.

The commit protocol (recover, plan, stage, decide, rename into place, commit, compact) lives in
`streamlab/landing.py` and is documented in docs/landing.md; this job gives it the three things
it needs: HDFS (Hadoop's FileSystem through the JVM), Kafka offsets (a KafkaConsumer from the
connector's kafka-clients jar) and Spark tasks that read exactly the planned offset range and
write it as Parquet into the run's staging folder (the project's JVM writer, jvm/src). The
arguments, the loop over topics and the run report are `streamlab/landing_run.py`. Spark is only
started when there is something to land; the DAG does runs with nothing new without this job at
all (`landing_run.run_without_spark`: no JVM).

    bin/spark-submit --name kafka_to_hdfs_landing --py-files .deps/python/streamlab.zip \\
        spark_jobs/kafka_to_hdfs_landing.py \\
        --bootstrap-servers 127.0.0.1:9092 --topic Hello-Kafka=text --run-id manual-1

(`.deps/python/streamlab.zip` is the `streamlab` package, packed by `make deps`; `--topics-file
dags/topics.yaml` lands its `land: true` topics, read by `streamlab.topics`, which validates it.)

Output (the roots are named in `streamlab/lake.py`):
/data/raw/<topic>/dt=YYYY-MM-DD/hr=HH/part-<topic>+<partition>+<first>+<last>.parquet
(columns topic, partition, offset, timestamp, timestamp_type, key, value), undecodable records
under /data/quarantine/<topic>/ (same columns, value as bytes, plus reason), and the run report
as JSON at /data/_landing/reports/<run id>.json (also printed after `LANDING_REPORT_JSON `).
Exit status 1 if any topic failed (e.g. a retention gap: see --accept-data-loss).

After each topic's commit (a no-op run's too) the job mirrors the commit record's end offsets to
the Kafka consumer group `--consumer-group` (default `streamlab-landing`), so that
`bin/kafka-consumer-groups.sh --describe --group streamlab-landing` shows the landing's LAG. The
group is never read back: HDFS stays the only source of truth, and a failed group commit is a
warning in the log and the report (`consumer_group`), never a failed run.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import posixpath
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

from pyspark.sql import SparkSession

from streamlab import landing, landing_run
from streamlab.stack import processes

log = logging.getLogger("kafka_to_hdfs_landing")

REPORT_MARKER = landing_run.REPORT_MARKER
UNDECODABLE = "value is not valid UTF-8 (topic value_format: text)"


# ---- slices -----------------------------------------------------------------------------------

# Below this many offsets a run reads one slice per Kafka partition: a task costs ~0.1 s.
SPLIT_ABOVE_OFFSETS = 100_000


def plan_slices(start: dict[int, int], end: dict[int, int], cores: int) -> list[dict[str, int]]:
    """Cut the planned offset ranges into one Spark task's worth each: every partition with
    something to land gets at least one slice; large runs get about `cores` slices in all,
    shared by the partitions in proportion to their offsets, so no core idles beside a big one."""
    todo = {p: end[p] - start[p] for p in sorted(end) if end[p] > start[p]}
    total = sum(todo.values())
    slices = []
    for p, n in todo.items():
        pieces = max(1, round(cores * n / total)) if total > SPLIT_ABOVE_OFFSETS else 1
        step = -(-n // pieces)
        for lo in range(start[p], end[p], step):
            slices.append({"partition": p, "from": lo, "until": min(lo + step, end[p])})
    return slices


# ---- Kafka and HDFS through the JVM ---------------------------------------------------------


def _java_class(e: Exception) -> str:
    je = getattr(e, "java_exception", None)
    return je.getClass().getName() if je is not None else ""


class HadoopFileSystem:
    """streamlab.landing.FileSystem over org.apache.hadoop.fs.FileSystem (via py4j)."""

    def __init__(self, jvm: Any, gateway: Any, hadoop_conf: Any, root: str):
        self.jvm, self.gateway, self.conf = jvm, gateway, hadoop_conf
        fs = self._fs(root)
        self.can_concat = self.can_snapshot = fs.getScheme() == "hdfs"
        self.uri = fs.getUri().toString()

    def _path(self, path: str) -> Any:
        return self.jvm.org.apache.hadoop.fs.Path(path)

    def _fs(self, path: str) -> Any:
        return self._path(path).getFileSystem(self.conf)

    def status(self, path: str) -> landing.FileStatus | None:
        from py4j.protocol import Py4JJavaError

        try:
            st = self._fs(path).getFileStatus(self._path(path))
        except Py4JJavaError as e:
            if _java_class(e) == "java.io.FileNotFoundException":
                return None
            raise
        is_dir = st.isDirectory()
        return landing.FileStatus(
            path, posixpath.basename(path.rstrip("/")), is_dir, 0 if is_dir else st.getLen()
        )

    def list(self, path: str) -> list[landing.FileStatus]:
        from py4j.protocol import Py4JJavaError

        try:
            entries = self._fs(path).listStatus(self._path(path))
        except Py4JJavaError as e:
            if _java_class(e) == "java.io.FileNotFoundException":
                return []
            raise
        out = []
        for st in entries:
            name = st.getPath().getName()
            is_dir = st.isDirectory()
            out.append(
                landing.FileStatus(posixpath.join(path, name), name, is_dir, 0 if is_dir else st.getLen())
            )
        return sorted(out, key=lambda s: s.name)

    def mkdirs(self, path: str) -> None:
        self._fs(path).mkdirs(self._path(path))

    def read(self, path: str, offset: int = 0, length: int | None = None) -> bytes:
        from py4j.protocol import Py4JJavaError

        if length is None:
            st = self.status(path)
            if st is None:
                raise FileNotFoundError(path)
            length = st.length - offset
        try:
            stream = self._fs(path).open(self._path(path))
        except Py4JJavaError as e:
            if _java_class(e) == "java.io.FileNotFoundException":
                raise FileNotFoundError(path) from None
            raise
        try:
            stream.seek(offset)
            return bytes(self.jvm.org.apache.commons.io.IOUtils.toByteArray(stream, length))
        finally:
            stream.close()

    def create(self, path: str, data: bytes) -> None:
        from py4j.protocol import Py4JJavaError

        try:
            out = self._fs(path).create(self._path(path), False)
        except Py4JJavaError as e:
            if _java_class(e) == "org.apache.hadoop.fs.FileAlreadyExistsException":
                raise FileExistsError(path) from None
            raise
        try:
            out.write(bytearray(data))
        finally:
            out.close()

    def rename(self, src: str, dst: str) -> bool:
        return bool(self._fs(src).rename(self._path(src), self._path(dst)))

    def delete(self, path: str, recursive: bool = False) -> bool:
        return bool(self._fs(path).delete(self._path(path), recursive))

    def concat(self, target: str, sources: Sequence[str]) -> None:
        arr = self.gateway.new_array(self.jvm.org.apache.hadoop.fs.Path, len(sources))
        for i, s in enumerate(sources):
            arr[i] = self._path(s)
        self._fs(target).concat(self._path(target), arr)

    # HDFS snapshots (DistributedFileSystem): a reader's consistent view at each commit.
    def allow_snapshot(self, path: str) -> None:
        self._fs(path).allowSnapshot(self._path(path))  # idempotent; needs the HDFS superuser

    def create_snapshot(self, path: str, name: str) -> None:
        self._fs(path).createSnapshot(self._path(path), name)

    def delete_snapshot(self, path: str, name: str) -> None:
        self._fs(path).deleteSnapshot(self._path(path), name)


class KafkaOffsets:
    """Earliest and latest offsets per partition, from a KafkaConsumer in the driver's JVM."""

    def __init__(self, jvm: Any, bootstrap: str, options: dict[str, str], timeout_s: int = 30):
        self.jvm = jvm
        props = jvm.java.util.Properties()
        for k, v in {**options, "bootstrap.servers": bootstrap, "client.id": "streamlab-landing-offsets",
                     "key.deserializer": "org.apache.kafka.common.serialization.ByteArrayDeserializer",
                     "value.deserializer": "org.apache.kafka.common.serialization.ByteArrayDeserializer",
                     "enable.auto.commit": "false"}.items():  # fmt: skip
            props.setProperty(k, str(v))
        self.consumer = jvm.org.apache.kafka.clients.consumer.KafkaConsumer(props)
        self.timeout = jvm.java.time.Duration.ofSeconds(timeout_s)
        self.timeout_s = timeout_s
        admin = jvm.java.util.Properties()
        admin.setProperty("bootstrap.servers", bootstrap)
        admin.setProperty("client.id", "streamlab-landing-admin")
        self.admin_props = admin
        self.admin = None
        # KafkaConsumer is for one thread at a time; topics landed side by side share it.
        self._lock = threading.Lock()

    def topic_id(self, topic: str) -> str | None:
        with self._lock:
            if self.admin is None:
                self.admin = self.jvm.org.apache.kafka.clients.admin.Admin.create(self.admin_props)
        names = self.jvm.java.util.Collections.singletonList(topic)
        seconds = self.jvm.java.util.concurrent.TimeUnit.SECONDS
        described = self.admin.describeTopics(names).allTopicNames().get(self.timeout_s, seconds)
        return described.get(topic).topicId().toString()

    def available(self, topic: str) -> dict[int, tuple[int, int]]:
        with self._lock:
            return self._available(topic)

    def _available(self, topic: str) -> dict[int, tuple[int, int]]:
        infos = self.consumer.partitionsFor(topic, self.timeout)
        if infos is None or infos.isEmpty():
            raise landing.LandingError(f"topic {topic!r} does not exist in Kafka")
        tps = self.jvm.java.util.ArrayList()
        for info in infos:
            tps.add(self.jvm.org.apache.kafka.common.TopicPartition(topic, info.partition()))
        begin = self.consumer.beginningOffsets(tps, self.timeout)
        end = self.consumer.endOffsets(tps, self.timeout)
        return {tp.partition(): (int(begin.get(tp)), int(end.get(tp))) for tp in tps}

    def close(self) -> None:
        with self._lock:
            self.consumer.close()
        if self.admin is not None:
            self.admin.close()


class LazySpark:
    """The SparkSession, started on first use (a run with nothing to land never starts it)."""

    def __init__(self):
        self.session: SparkSession | None = None
        self.startup_s: float | None = None
        self._lock = threading.Lock()  # topics landed side by side ask for it at once

    def get(self) -> SparkSession:
        with self._lock:
            if self.session is None:
                t = time.monotonic()
                self.session = SparkSession.builder.getOrCreate()
                self.startup_s = round(time.monotonic() - t, 3)
                log.info("Spark session started in %.1f s", self.startup_s)
            return self.session

    def stop(self) -> None:
        if self.session is not None:
            self.session.stop()


class JvmStagingWriter:
    """streamlab.landing.StagingWriter: Spark tasks of the project's JVM writer
    (jvm/src/main/java/streamlab/KafkaParquetStager.java) read the planned offsets with a
    KafkaConsumer and write Parquet under <staging>/raw/h=<hour> (decodable records) and
    <staging>/quarantine/h=<hour> (the rest, as bytes, with the reason)."""

    def __init__(
        self, spark: LazySpark, bootstrap: str, kafka_options: dict[str, str], accept_data_loss: bool
    ):
        self.spark, self.bootstrap = spark, bootstrap
        self.kafka_options, self.accept_data_loss = kafka_options, accept_data_loss

    def write(self, plan: dict[str, Any], staging_dir: str, records_per_file: int) -> landing.WriteResult:
        from py4j.protocol import Py4JJavaError

        spark = self.spark.get()
        start = {int(p): o for p, o in plan["start"].items()}
        end = {int(p): o for p, o in plan["end"].items()}
        request = {
            "topic": plan["topic"],
            "value_format": plan["value_format"],
            "staging_dir": staging_dir,
            "records_per_file": records_per_file,
            "slices": plan_slices(start, end, spark.sparkContext.defaultParallelism),
            "kafka": {**self.kafka_options, "bootstrap.servers": self.bootstrap},
            "fail_on_data_loss": not self.accept_data_loss,
            "reason": UNDECODABLE,
            "quarantine_hour": plan["planned_at_ms"] // landing.HOUR_MS,  # for timestamps naming no hour
            "spark_version": spark.version,
        }
        stager = spark._jvm.streamlab.KafkaParquetStager
        try:
            result = json.loads(stager.stage(spark._jsparkSession, json.dumps(request)))
        except Py4JJavaError as e:
            raise landing.LandingError(f"staging {plan['topic']} failed: {_root_cause(e)}") from None
        if result.get("skipped_offsets"):
            log.warning("topic %s: %d offsets deleted by Kafka were skipped (accept_data_loss)",
                        plan["topic"], result["skipped_offsets"])  # fmt: skip
        slices = result.get("slices", [])
        log.info(
            "topic %s run %s: read %d records in %d slices (%d undecodable); per slice, ms in the task, "
            "in Kafka's poll (fetch and parse), closing files: %s",
            plan["topic"], plan["seq"], result["records"], len(request["slices"]), result["quarantined"],
            [(sl.get("task_ms"), sl.get("poll_ms"), sl.get("close_ms")) for sl in slices],
        )  # fmt: skip
        gaps = [
            {"partition": sl["partition"], "start": lo, "end": hi}
            for sl in slices
            for lo, hi in sl.get("skipped_ranges", [])
        ]
        return landing.WriteResult(
            records=result["records"],
            quarantined=result["quarantined"],
            read_gaps=gaps,
            first_record_ms=result.get("first_record_ms"),
        )


def _root_cause(e: Exception) -> str:
    """The innermost Java exception's class and message (a task's error, not py4j's trace)."""
    je = getattr(e, "java_exception", None)
    if je is None:
        return str(e)
    while je.getCause() is not None and je.getCause() is not je:
        je = je.getCause()
    return f"{je.getClass().getName()}: {je.getMessage()}"


# ---- the run --------------------------------------------------------------------------------


def _exit_with_launcher() -> None:
    """Exit when the process that started spark-submit dies (e.g. a SIGKILLed Airflow task), so
    no orphaned landing keeps running beside the retry. Linux only."""
    launcher = os.getppid()  # the spark-submit JVM
    first = processes.parent(launcher)
    if first is None:
        return

    def watch() -> None:
        while True:
            time.sleep(1)
            if os.getppid() != launcher or processes.parent(launcher) != first:
                log.error("the process that started this job is gone: exiting")
                os._exit(3)

    threading.Thread(target=watch, name="exit-with-launcher", daemon=True).start()


def _hadoop(jvm: Any) -> Any:
    """Hadoop configuration with spark.hadoop.* applied, without starting a SparkContext."""
    return jvm.org.apache.spark.deploy.SparkHadoopUtil.get().newConfiguration(
        jvm.org.apache.spark.SparkConf()
    )


def run(args: argparse.Namespace) -> dict[str, Any]:
    from pyspark import SparkContext

    SparkContext._ensure_initialized()  # the JVM gateway only; Spark itself starts lazily
    jvm, gateway = SparkContext._jvm, SparkContext._gateway
    fs = HadoopFileSystem(jvm, gateway, _hadoop(jvm), args.raw_root)
    options = landing_run.kafka_options(args)
    offsets = KafkaOffsets(jvm, args.bootstrap_servers, options)
    spark = LazySpark()
    writer = JvmStagingWriter(spark, args.bootstrap_servers, options, args.accept_data_loss)

    def finish() -> dict[str, Any]:
        offsets.close()
        spark.stop()
        return {"spark": True, "spark_startup_s": spark.startup_s}

    return landing_run.run(args, fs, offsets, writer, finish)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = landing_run.parse_args(argv, __doc__.split("\n\n")[0])
    if args.exit_with_launcher:
        _exit_with_launcher()
    report = run(args)
    return 0 if report["status"] == "ok" else 1


if __name__ == "__main__":
    sys.exit(main())
