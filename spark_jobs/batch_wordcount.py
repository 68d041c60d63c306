"""Word count of one day of landed Kafka values, published atomically, checked before publishing.

Reads every Parquet file under /data/raw/<topic>/dt=<date>/ (the landing's folders, in the HDFS
snapshot of the topic's last commit when there is one; names starting with `_` or `.` skipped as
by any reader), counts words with the shared tokenization
(`streamlab.textproc.word_counts`: lower-case, runs of Unicode letters and digits) and writes
/data/curated/wordcount/dt=<date>/part-00000.parquet (word string, count long) + `_SUCCESS`
(a JSON summary: records, tokens, distinct words, inputs).

    bin/spark-submit --name batch_wordcount --py-files .deps/python/streamlab.zip \\
        spark_jobs/batch_wordcount.py --date 2025-01-01 --topic Hello-Kafka

(`.deps/python/streamlab.zip` is the `streamlab` package, packed by `make deps`; the folders are
named in `streamlab/lake.py`.)

Publication, so that no reader ever sees old and new files mixed, even when two attempts of one
day overlap:
1. the result is written into this attempt's hidden temporary folder beside the target
   (`_tmp-<date>-<attempt>`, no `=` so Spark's partition discovery skips it) and checked:
   sum(count) must equal the number of tokens read (counted while reading, by another
   expression), and no word may be null or empty; `_SUCCESS` names the attempt and the data
   file's length;
2. `streamlab.daypublish.publish` takes the day's lock (`_lock-<date>`, renamed in whole),
   then: first result for the day, one rename of the folder to `dt=<date>` that fails rather than
   nest it; a re-run, `_SUCCESS` removed, the single data file replaced by one atomic
   `rename(OVERWRITE)`, the new `_SUCCESS` moved in. Temporary folders are removed only by age
   (older than a day), never another live attempt's.
"""

from __future__ import annotations

import argparse
import json
import logging
import posixpath
import sys
import time
import uuid
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

from py4j.protocol import Py4JJavaError
from pyspark.sql import DataFrame, Observation, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import LongType, StringType, StructField, StructType

from streamlab import daypublish, lake, landing
from streamlab.textproc import tokens, word_counts

log = logging.getLogger("batch_wordcount")

DATA_FILE = daypublish.DATA_FILE
SUMMARY_MARKER = "WORDCOUNT_SUMMARY_JSON "


# ---- extract / transform ----------------------------------------------------------------------


EMPTY_RESULT = StructType([StructField("word", StringType()), StructField("count", LongType())])


def consistent_day(hdfs: Hdfs, topic: str, day: str, raw_root: str) -> str:
    """The day's folder in the landing snapshot of the topic's last commit, when there is one: a
    frozen view, which a compaction running meanwhile cannot change under Spark's tasks (the live
    folder otherwise, e.g. on file:// or between a commit and its snapshot)."""
    paths = lake.TopicPaths(topic, raw_root)
    commits = sorted(n for n in hdfs.names(paths.log_dir) if n.endswith(".commit.json"))
    if commits:
        snapshot = posixpath.join(
            paths.root, ".snapshot", landing.snapshot_name(int(commits[-1].split(".")[0]))
        )
        if hdfs.exists(snapshot):
            return posixpath.join(snapshot, lake.day_dir(day))
    return lake.raw_day(topic, day, raw_root)


def landed_values(spark: SparkSession, folders: Sequence[str]) -> DataFrame:
    """`value` of every landed record in `folders` (at least one)."""
    df = spark.read.parquet(*folders)
    value_type = df.schema["value"].dataType
    if not isinstance(value_type, StringType):
        raise SystemExit(f"value is {value_type.simpleString()}, not string: only text topics are counted")
    return df.select("value")


def count_words(values: DataFrame, observation: Observation) -> DataFrame:
    """Word counts; while reading, `observation` gets records and tokens (the check's reference)."""
    observed = values.observe(
        observation,
        F.count(F.lit(1)).alias("records"),
        F.coalesce(F.sum(F.size(tokens(F.col("value")))), F.lit(0)).alias("tokens"),
    )
    return word_counts(observed).select("word", F.col("count").cast("long").alias("count"))


# ---- load -------------------------------------------------------------------------------------


class Hdfs:
    """What `streamlab.daypublish` needs of `streamlab.landing.FileSystem`, over Hadoop's FileSystem
    and FileContext (through the JVM)."""

    def __init__(self, spark: SparkSession, root: str):
        self.jvm = spark._jvm
        self.gateway = spark.sparkContext._gateway
        self.conf = spark._jsc.hadoopConfiguration()
        self.fs = self.jvm.org.apache.hadoop.fs.Path(root).getFileSystem(self.conf)
        self.fc = self.jvm.org.apache.hadoop.fs.FileContext.getFileContext(self.fs.getUri(), self.conf)

    def path(self, p: str) -> Any:
        return self.jvm.org.apache.hadoop.fs.Path(p)

    @staticmethod
    def _is(error: Py4JJavaError, *names: str) -> bool:
        return error.java_exception.getClass().getSimpleName() in names

    def _entry(self, p: str, st: Any) -> landing.FileStatus:
        is_dir = bool(st.isDirectory())
        length = 0 if is_dir else int(st.getLen())
        return landing.FileStatus(p, st.getPath().getName(), is_dir, length, int(st.getModificationTime()))

    def status(self, p: str) -> landing.FileStatus | None:
        try:
            return self._entry(p, self.fs.getFileStatus(self.path(p)))
        except Py4JJavaError as e:
            if self._is(e, "FileNotFoundException"):
                return None
            raise

    def list(self, p: str) -> list[landing.FileStatus]:
        try:
            entries = self.fs.listStatus(self.path(p))
        except Py4JJavaError as e:
            if self._is(e, "FileNotFoundException"):
                return []
            raise
        return sorted((self._entry(posixpath.join(p, st.getPath().getName()), st) for st in entries),
                      key=lambda e: e.name)  # fmt: skip

    def exists(self, p: str) -> bool:
        return bool(self.fs.exists(self.path(p)))

    def names(self, p: str) -> list[str]:
        return [e.name for e in self.list(p)]

    def read(self, p: str) -> bytes:
        try:
            stream = self.fs.open(self.path(p))
        except Py4JJavaError as e:
            if self._is(e, "FileNotFoundException"):
                raise FileNotFoundError(p) from None
            raise
        try:
            return bytes(self.jvm.org.apache.commons.io.IOUtils.toByteArray(stream))
        finally:
            stream.close()

    def create(self, p: str, data: bytes) -> None:
        try:
            out = self.fs.create(self.path(p), False)  # exclusive
        except Py4JJavaError as e:
            if self._is(e, "FileAlreadyExistsException"):
                raise FileExistsError(p) from None
            raise
        try:
            out.write(bytearray(data))
        finally:
            out.close()

    def _rename(self, src: str, dst: str, option: str) -> None:
        rename = self.jvm.org.apache.hadoop.fs.Options.Rename
        opts = self.gateway.new_array(rename, 1)
        opts[0] = getattr(rename, option)
        self.fc.rename(self.path(src), self.path(dst), opts)

    def rename(self, src: str, dst: str) -> bool:
        """Rename that fails (False) instead of replacing `dst` or moving `src` inside it."""
        try:
            self._rename(src, dst, "NONE")
            return True
        except Py4JJavaError as e:
            if self._is(
                e, "FileAlreadyExistsException", "FileNotFoundException", "ParentNotDirectoryException"
            ):
                return False
            raise

    def replace(self, src: str, dst: str) -> None:
        """Atomic rename over an existing file (HDFS rename with OVERWRITE)."""
        try:
            self._rename(src, dst, "OVERWRITE")
        except Py4JJavaError as e:
            if self._is(e, "FileNotFoundException", "ParentNotDirectoryException"):
                raise FileNotFoundError(src) from None
            raise

    def delete(self, p: str, recursive: bool = True) -> bool:
        return bool(self.fs.delete(self.path(p), recursive))


def verify(spark: SparkSession, folder: str, tokens_read: int) -> dict[str, int]:
    """Read the written result back: sum(count) == tokens read, no null/empty word, unique words."""
    row = (
        spark.read.parquet(folder)
        .agg(
            F.coalesce(F.sum("count"), F.lit(0)).alias("sum_count"),
            F.count(F.lit(1)).alias("words"),
            F.countDistinct("word").alias("distinct"),
            F.sum(F.when(F.col("word").isNull() | (F.col("word") == ""), 1).otherwise(0)).alias("bad"),
        )
        .first()
    )
    if row["sum_count"] != tokens_read or row["bad"] or row["words"] != row["distinct"]:
        raise RuntimeError(
            f"check failed, nothing published: sum(count)={row['sum_count']} tokens read={tokens_read} "
            f"null/empty words={row['bad']} rows={row['words']} distinct words={row['distinct']}"
        )
    return {"sum_count": int(row["sum_count"]), "distinct_words": int(row["words"])}


# ---- main -------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--date", required=True, help="YYYY-MM-DD (UTC day of the record timestamps)")
    p.add_argument("--topic", action="append", required=True, help="landed text topic(s), repeatable or a,b")
    p.add_argument("--raw-root", default=lake.RAW_ROOT)
    p.add_argument("--out-root", default=lake.WORDCOUNT_ROOT)
    p.add_argument("--run-id", default="manual")
    args = p.parse_args(argv)
    datetime.strptime(args.date, "%Y-%m-%d")
    args.topic = [t for arg in args.topic for t in arg.split(",") if t]
    return args


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    spark = SparkSession.builder.getOrCreate()
    spark.conf.set("spark.sql.session.timeZone", "UTC")
    hdfs = Hdfs(spark, args.out_root)
    removed = daypublish.remove_leftovers(hdfs, args.out_root, int(time.time() * 1000))
    if removed:
        log.info("removed leftovers older than a day: %s", removed)
    final = lake.wordcount_day(args.date, args.out_root)
    attempt = uuid.uuid4().hex[:12]
    tmp = daypublish.tmp_folder(args.out_root, args.date, attempt)
    for read in range(3):
        folders = [
            f
            for f in (consistent_day(hdfs, t, args.date, args.raw_root) for t in args.topic)
            if hdfs.exists(f)
        ]
        try:
            if folders:
                observation = Observation("wordcount")
                count_words(landed_values(spark, folders), observation).coalesce(1).write.mode(
                    "overwrite"
                ).parquet(tmp)
                metrics = observation.get
                records, tokens_read = int(metrics.get("records") or 0), int(metrics.get("tokens") or 0)
            else:  # nothing landed that day: an empty result (observed metrics never fire on no input)
                spark.createDataFrame([], EMPTY_RESULT).coalesce(1).write.mode("overwrite").parquet(tmp)
                records = tokens_read = 0
            break
        except Exception as e:
            # A landing compaction deletes the snapshots it would otherwise be refused by: read the
            # newest one again.
            if read == 2 or "/.snapshot/" not in " ".join(folders) or "FileNotFound" not in str(e):
                raise
            log.warning("a landing snapshot went away while it was read (%s): reading again", str(e)[:300])
    checked = verify(spark, tmp, tokens_read)
    parts = [n for n in hdfs.names(tmp) if n.startswith("part-")]
    if len(parts) != 1:
        raise RuntimeError(f"expected one data file in {tmp}, found {parts}")
    if not hdfs.rename(posixpath.join(tmp, parts[0]), posixpath.join(tmp, DATA_FILE)):
        raise RuntimeError(f"cannot rename {parts[0]} to {DATA_FILE} in {tmp}")
    for name in hdfs.names(tmp):
        if name != DATA_FILE:
            hdfs.delete(posixpath.join(tmp, name))  # Spark's empty _SUCCESS and checksum files
    summary = {
        "date": args.date,
        "topics": args.topic,
        "inputs": folders,
        "records": records,
        "tokens": tokens_read,
        **checked,
        "run_id": args.run_id,
        "attempt": attempt,  # the data file beside this _SUCCESS is this attempt's, of this length:
        "data_bytes": hdfs.status(posixpath.join(tmp, DATA_FILE)).length,
        "written_at": datetime.now(timezone.utc).isoformat(),
    }
    hdfs.create(posixpath.join(tmp, lake.SUMMARY_FILE), json.dumps(summary, sort_keys=True).encode())
    summary["publication"] = daypublish.publish(hdfs, args.out_root, args.date, attempt)
    summary["output"] = final
    log.info("published %s: %s", final, summary)
    print(SUMMARY_MARKER + json.dumps(summary, sort_keys=True), flush=True)
    spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
