"""One landing run: its arguments, its topics, the consumer group mirror, the run report.

The commit protocol of each topic is `streamlab.landing.land_topic`; a run gives it a file
system, a source of Kafka offsets and a staging writer. Two processes run it, with the same
arguments:

- the Spark job (`spark_jobs/kafka_to_hdfs_landing.py`): Hadoop's FileSystem and a KafkaConsumer
  through the JVM, Spark tasks that stage the records;
- `run_without_spark` (the DAG's `land` task tries it first): WebHDFS and librdkafka, no JVM, no
  staging writer. It does runs with nothing new to land (a no-op run still commits: it moves the
  topic's "landed through" time and closes hours for the compaction) in about a second instead
  of a JVM start. As soon as a topic has records, it stops before publishing anything for that
  topic and hands the run to the Spark job (`None`); topics it committed before are committed
  again by that run as no-ops, which changes nothing.
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import posixpath
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from typing import Any

from streamlab import kafka_groups, lake, landing, topics

log = logging.getLogger("streamlab.landing_run")

REPORT_MARKER = "LANDING_REPORT_JSON "
# Larger fetches than the consumer defaults (1 MiB per partition): batch reads of large ranges.
KAFKA_DEFAULTS = {
    "max.partition.fetch.bytes": "16777216",
    "fetch.max.bytes": "67108864",
    # Records of aborted transactions are never landed; the end offsets are the last stable ones
    # (an open transaction's records wait for the next run).
    "isolation.level": "read_committed",
}
KAFKA_TIMEOUT_S = 30
# A topic's protocol is mostly waiting on NameNode and Kafka round trips, and its small Spark
# job leaves task slots free: a few topics at once fill them (bench/landing_bench.py, the matrix).
PARALLEL_TOPICS = 4


# ---- arguments ------------------------------------------------------------------------------


def _bool(value: str) -> bool:
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off", "", "none"):
        return False
    raise argparse.ArgumentTypeError(f"not a boolean: {value!r}")


def _positive(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, not {value!r}")
    return int(value)


def _topic(value: str) -> tuple[str, str]:
    name, _, fmt = value.partition("=")
    fmt = fmt or "text"
    if not name or fmt not in ("text", "bytes"):
        raise argparse.ArgumentTypeError(f"--topic NAME[=text|bytes], got {value!r}")
    return name, fmt


def parse_args(argv: Sequence[str] | None = None, description: str | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--bootstrap-servers", required=True)
    p.add_argument("--topic", action="append", default=[], help="NAME[=text|bytes][,NAME...], repeatable")
    p.add_argument("--topics-file", help="land the topics with `land: true` of this topics.yaml")
    p.add_argument("--run-id", default=None)
    p.add_argument(
        "--accept-data-loss",
        type=_bool,
        nargs="?",
        const=True,
        default=False,
        help="skip records Kafka deleted before they were landed (recorded in the report)",
    )
    p.add_argument("--raw-root", default=lake.RAW_ROOT)
    p.add_argument("--quarantine-root", default=lake.QUARANTINE_ROOT)
    p.add_argument("--reports-root", default=lake.REPORTS_ROOT)
    p.add_argument("--report-path", help="default: <reports-root>/<run id>.json")
    p.add_argument("--target-file-mb", type=float, default=128)
    p.add_argument("--max-records-per-file", type=int, default=5_000_000)
    p.add_argument("--compact", type=_bool, nargs="?", const=True, default=True)
    p.add_argument("--small-file-mb", type=float, default=32)
    p.add_argument("--compact-close-minutes", type=float, default=10)
    p.add_argument("--compact-lookback-hours", type=int, default=48)
    p.add_argument("--on-topic-reset", choices=["fail", landing.LAND_NEW], default="fail",
                   help="a topic deleted and re-created, or a truncated partition: fail (default), or "
                        "land what the topic holds now as a new generation of files")  # fmt: skip
    p.add_argument("--keep-snapshots", type=int, default=landing.LandingOptions.keep_snapshots,
                   help="HDFS snapshots of each topic folder kept, one per commit (0: none)")  # fmt: skip
    p.add_argument("--parallel-topics", type=_positive, default=PARALLEL_TOPICS,
                   help="topics landed at once, each with its own protocol and Spark job (1: one "
                        "after the other)")  # fmt: skip
    p.add_argument(
        "--kafka-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra Kafka consumer setting, e.g. max.partition.fetch.bytes=8388608",
    )
    p.add_argument(
        "--consumer-group",
        default=kafka_groups.LANDING_GROUP,
        help="Kafka consumer group that gets each topic's committed end offsets, for Kafka's tools "
        f"(default {kafka_groups.LANDING_GROUP}; empty: none)",
    )
    p.add_argument(
        "--exit-with-launcher",
        action="store_true",
        help="exit if the process that started spark-submit dies (set by the DAG)",
    )
    args = p.parse_args(argv)  # fmt: skip
    try:
        args.topic = [_topic(spec) for arg in args.topic for spec in arg.split(",") if spec]
    except argparse.ArgumentTypeError as e:
        p.error(str(e))
    if args.topics_file:
        try:
            args.topic += [(t.name, t.value_format) for t in topics.landed_topics(args.topics_file)]
        except topics.TopicsFileError as e:
            p.error(str(e))
    if not args.topic:
        p.error("no topic: give --topic NAME[=text|bytes] or --topics-file")
    # Each topic once: two threads landing one topic would fence each other (one would fail).
    formats: dict[str, str] = {}
    for name, fmt in args.topic:
        if formats.setdefault(name, fmt) != fmt:
            p.error(f"topic {name!r} is given as {formats[name]} and as {fmt}: give one value format")
    args.topic = list(formats.items())
    args.run_id = args.run_id or f"manual__{datetime.now(timezone.utc):%Y-%m-%dT%H%M%S}"
    return args


def kafka_options(args: argparse.Namespace) -> dict[str, str]:
    return {**KAFKA_DEFAULTS, **dict(kv.split("=", 1) for kv in args.kafka_option)}


def landing_options(args: argparse.Namespace) -> landing.LandingOptions:
    return landing.LandingOptions(
        accept_data_loss=args.accept_data_loss,
        target_file_bytes=int(args.target_file_mb * 2**20),
        max_records_per_file=args.max_records_per_file,
        compact=args.compact,
        small_file_bytes=int(args.small_file_mb * 2**20),
        compact_target_bytes=int(args.target_file_mb * 2**20),
        close_after_ms=int(args.compact_close_minutes * 60_000),
        compact_lookback_hours=args.compact_lookback_hours,
        keep_snapshots=args.keep_snapshots,
        on_topic_reset=args.on_topic_reset,
    )


# ---- the run --------------------------------------------------------------------------------


def mirror_to_group(report: dict[str, Any], group: kafka_groups.GroupCommitter, fs, paths) -> None:
    """Commit the topic's committed ends (its newest HDFS commit record) to the consumer group; a
    failure is a warning and a line of the report, not a failed run."""

    def commit(topic: str, ends: dict[int, int]) -> None:
        group.commit({topic: ends})

    try:
        latest = landing.latest_commit(fs, paths)
    except Exception as e:  # the report's own ends are this run's commit: mirror those
        log.warning("topic %s: newest commit record not read (%s); mirroring this run's", report["topic"], e)
        latest = None
    result = kafka_groups.mirror_landing_commit(report, group.group, commit, latest)
    if result is None:
        return
    if result["committed"]:
        log.info("topic %s: consumer group %s now at %s", report["topic"], group.group, result["offsets"])
    else:
        log.warning(
            "topic %s: the landing is committed, but committing its end offsets %s to the consumer "
            "group %s failed (%s); Kafka's tools show an older lag until the next run commits again",
            report["topic"], result["offsets"], group.group, result["error"],
        )  # fmt: skip


def run(
    args: argparse.Namespace,
    fs: landing.FileSystem,
    offsets: landing.OffsetSource,
    writer: landing.StagingWriter | None,
    finish: Callable[[], Mapping[str, Any]] = dict,
) -> dict[str, Any] | None:
    """Land every topic of `args`; write the run report (HDFS and stdout) and return it.

    With a writer, up to `args.parallel_topics` topics are landed at once: each topic's protocol
    is its own (its log, its plan, its commit), so landing them side by side changes nothing of
    its guarantee; their Spark jobs take the task slots in the order they come (FIFO). `finish`
    runs after the topics (e.g. stops Spark) and returns fields for the report. `writer` None: a
    run without staging, one topic after the other; None is returned, and no report written, as
    soon as a topic has records to land."""
    # A report left by an earlier attempt of this run must not outlive a crash of this one.
    report_at = args.report_path or lake.report_path(args.run_id, args.reports_root)
    fs.delete(report_at)
    opts = landing_options(args)
    started = datetime.now(timezone.utc)
    group = (
        kafka_groups.GroupCommitter(args.bootstrap_servers, args.consumer_group)
        if args.consumer_group
        else None
    )
    group_lock = threading.Lock()  # one librdkafka consumer for every topic's commit

    def land(name: str, fmt: str) -> dict[str, Any]:
        paths = lake.TopicPaths(name, args.raw_root, args.quarantine_root)
        try:
            report = landing.land_topic(fs, paths, offsets, writer, opts, args.run_id, fmt)
        except landing.StagingNeeded:
            raise
        except Exception as e:  # report it, land the other topics, fail at the end
            if writer is None and not isinstance(e, landing.LandingError):
                raise  # WebHDFS or librdkafka, not the landing: the Spark job's run decides
            log.exception("topic %s failed", name)
            return {"topic": name, "status": "error", "error_type": type(e).__name__, "error": str(e)[:4000]}
        if group is not None:
            with group_lock:
                mirror_to_group(report, group, fs, paths)
        return report

    parallel = 1 if writer is None else min(args.parallel_topics, len(args.topic))
    try:
        if parallel > 1:
            with ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="land") as pool:
                reports = list(pool.map(lambda topic: land(*topic), args.topic))
        else:
            reports = []
            for name, fmt in args.topic:
                try:
                    reports.append(land(name, fmt))
                except landing.StagingNeeded as e:
                    log.info("%s: the run goes to Spark", e)
                    return None
    finally:
        extra = dict(finish())
        if group is not None:
            group.close()
    failed = [r["topic"] for r in reports if r["status"] == "error"]
    report = {
        "run_id": args.run_id,
        "status": "failed" if failed else "ok",
        "failed_topics": failed,
        "started_at": started.isoformat(),
        "finished_at": datetime.now(timezone.utc).isoformat(),
        "file_system": getattr(fs, "uri", None),
        "raw_root": args.raw_root,
        "quarantine_root": args.quarantine_root,
        "parallel_topics": parallel,
        "topics": reports,
        **extra,
    }
    print(landing.format_report(report), flush=True)
    print(REPORT_MARKER + json.dumps(report, sort_keys=True), flush=True)
    fs.mkdirs(posixpath.dirname(report_at))
    fs.create(report_at, json.dumps(report, sort_keys=True, indent=1).encode())
    log.info("report written to %s", report_at)
    return report


# ---- without Spark ----------------------------------------------------------------------------


def java_topic_id(uuid: Any) -> str:
    """A topic ID as Kafka's Java client prints it (`Uuid.toString()`: URL-safe base64, no padding),
    the form the commit records hold; librdkafka's `str()` uses the other base64 alphabet."""
    raw = b"".join(
        (bits & 0xFFFF_FFFF_FFFF_FFFF).to_bytes(8, "big")
        for bits in (uuid.get_most_significant_bits(), uuid.get_least_significant_bits())
    )
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


class AdminOffsets:
    """streamlab.landing.OffsetSource over librdkafka's admin client: the same answers as the
    Spark job's KafkaConsumer (last stable offsets under read_committed, the topic ID as Kafka
    prints it)."""

    def __init__(self, bootstrap: str, options: Mapping[str, str], timeout_s: float = KAFKA_TIMEOUT_S):
        from confluent_kafka import IsolationLevel
        from confluent_kafka.admin import AdminClient

        # The connection settings the job's consumer gets too (a secured cluster's, say).
        shared = {k: v for k, v in options.items() if k.startswith(("security.", "sasl.", "ssl."))}
        self.admin = AdminClient(
            {**shared, "bootstrap.servers": bootstrap, "client.id": "streamlab-landing-offsets"}
        )
        self.timeout_s = timeout_s
        self.isolation = (
            IsolationLevel.READ_COMMITTED
            if options.get("isolation.level", "read_committed") == "read_committed"
            else IsolationLevel.READ_UNCOMMITTED
        )

    def topic_id(self, topic: str) -> str | None:
        from confluent_kafka import TopicCollection

        described = self.admin.describe_topics(TopicCollection([topic]), request_timeout=self.timeout_s)
        return java_topic_id(described[topic].result(self.timeout_s).topic_id)

    def available(self, topic: str) -> dict[int, tuple[int, int]]:
        from confluent_kafka import TopicPartition
        from confluent_kafka.admin import OffsetSpec

        meta = self.admin.list_topics(topic, timeout=self.timeout_s).topics.get(topic)
        if meta is None or meta.error is not None or not meta.partitions:
            raise landing.LandingError(f"topic {topic!r} does not exist in Kafka")
        tps = [TopicPartition(topic, p) for p in sorted(meta.partitions)]
        found: dict[int, list[int]] = {}
        for spec in (OffsetSpec.earliest(), OffsetSpec.latest()):
            futures = self.admin.list_offsets(
                {tp: spec for tp in tps}, isolation_level=self.isolation, request_timeout=self.timeout_s
            )
            for tp, f in futures.items():
                found.setdefault(tp.partition, []).append(f.result(self.timeout_s).offset)
        return {p: (begin, end) for p, (begin, end) in found.items()}

    def close(self) -> None:
        pass  # the admin client has nothing to close


def has_new_records(fs: landing.FileSystem, args: argparse.Namespace, offsets: landing.OffsetSource) -> bool:
    """A read-only look before the run: does a topic hold offsets past its last commit? (Saves the
    no-op commits of the topics before one that does. The decision is land_topic's own check.)"""
    for name, _fmt in args.topic:
        commit = landing.latest_commit(fs, lake.TopicPaths(name, args.raw_root, args.quarantine_root))
        ends = {int(p): e for p, e in (commit or {}).get("end", {}).items()}
        for p, (begin, end) in offsets.available(name).items():
            if end > ends.get(p, begin):
                return True
    return False


def run_without_spark(argv: Sequence[str], webhdfs_client: Any) -> dict[str, Any] | None:
    """The run of the Spark job's arguments `argv` when nothing is new: its report, or None when
    a topic has records to land (nothing published for it; run the Spark job)."""
    args = parse_args(argv)
    roots = (args.raw_root, args.quarantine_root, args.reports_root, args.report_path or "/")
    if not all(r.startswith("/") for r in roots):
        return None  # a URI or a relative path: resolved by the job's Hadoop configuration only
    fs = landing.WebHdfsFileSystem(webhdfs_client)
    offsets = AdminOffsets(args.bootstrap_servers, kafka_options(args))
    try:
        if has_new_records(fs, args, offsets):
            return None
    except landing.LandingError:
        return None  # e.g. a missing topic: the Spark job's run reports it like any failure
    return run(args, fs, offsets, None, lambda: {"spark": False, "spark_startup_s": None})
