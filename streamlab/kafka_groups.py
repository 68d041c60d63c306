"""The platform's positions in Kafka consumer groups: lag in Kafka's own tools, progress for the UI.

Neither job reads its position back from a group (the landing's truth is its HDFS commit record,
the streaming job's is its checkpoint); each one only *mirrors* its position into a group, so that
`bin/kafka-consumer-groups.sh --describe --group G` (and any Kafka monitoring) shows its LAG:

- the landing commits the end offsets of each topic's HDFS commit record to `LANDING_GROUP`
  (`landing_offsets`, `mirror_landing_commit`), also after a run that landed nothing new;
- the streaming word count commits the end offsets of its finished micro-batches to its group id,
  with the batch's progress as the commit's metadata (`spark_jobs/wordcount_stream.py`,
  `progress_commit`; format in docs/streaming.md). `group_offsets` reads both back.

The commits are standalone: a consumer with a `group.id` that never subscribes, so the group has
no members ("has no active members" in kafka-consumer-groups.sh) and a commit is accepted as is.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from typing import Any

LANDING_GROUP = "streamlab-landing"
# The broker keeps at most offset.metadata.max.bytes (4096 by default) of metadata per offset.
METADATA_MAX_BYTES = 4096
# How long a commit may wait for the group coordinator before it fails (librdkafka bounds a
# standalone synchronous commit by session.timeout.ms; its default, 45 s, would stall a job).
COMMIT_TIMEOUT_S = 10.0


class GroupCommitError(RuntimeError):
    """Kafka did not take the offsets (broker down, group in use by a consumer, ...)."""


def encode_metadata(values: Mapping[str, Any]) -> str:
    """Compact JSON for a commit's metadata, checked against the broker's default limit."""
    text = json.dumps(
        {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in values.items()},
        separators=(",", ":"),
        sort_keys=True,
    )
    if len(text.encode()) > METADATA_MAX_BYTES:
        raise ValueError(f"commit metadata of {len(text.encode())} bytes > {METADATA_MAX_BYTES}")
    return text


def parse_metadata(text: str | None) -> dict[str, Any]:
    """A commit's metadata as a dict ({} when absent or not a JSON object)."""
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


class GroupCommitter:
    """Commits offsets to one consumer group, without joining it (see the module docstring)."""

    def __init__(
        self,
        bootstrap_servers: str,
        group: str,
        timeout_s: float = COMMIT_TIMEOUT_S,
        config: Mapping[str, Any] | None = None,
        consumer_factory: Callable[[dict[str, Any]], Any] | None = None,
    ):
        self.group = group
        self.config = {
            "bootstrap.servers": bootstrap_servers,
            "group.id": group,
            "client.id": f"streamlab-group-commit-{group}",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "session.timeout.ms": max(1000, int(timeout_s * 1000)),
            # librdkafka logs every failed connection attempt to stderr (20 lines a second while
            # the broker is down); the commit's own error says what happened.
            "log_level": 0,
            **(config or {}),
        }
        self._factory = consumer_factory
        self._consumer = None

    def _get(self) -> Any:
        if self._consumer is None:
            if self._factory is not None:
                self._consumer = self._factory(dict(self.config))
            else:
                from confluent_kafka import Consumer

                self._consumer = Consumer(dict(self.config))
        return self._consumer

    def commit(self, offsets: Mapping[str, Mapping[int, int]], metadata: str | None = None) -> None:
        """Commit {topic: {partition: next offset}} synchronously; GroupCommitError if refused."""
        from confluent_kafka import TopicPartition

        extra = {"metadata": metadata} if metadata is not None else {}
        tps = [
            TopicPartition(topic, int(p), int(o), **extra)
            for topic, parts in sorted(offsets.items())
            for p, o in sorted(parts.items())
        ]
        if not tps:
            return
        try:
            result = self._get().commit(offsets=tps, asynchronous=False)
        except Exception as e:  # KafkaException: the whole request failed
            raise GroupCommitError(f"group {self.group!r}: {_kafka_error(e)}") from None
        failed = [tp for tp in result or [] if tp.error is not None]
        if failed:
            raise GroupCommitError(
                f"group {self.group!r}: "
                + "; ".join(f"{tp.topic}[{tp.partition}]: {_kafka_error(tp.error)}" for tp in failed)
            )

    def close(self) -> None:
        if self._consumer is not None:
            consumer, self._consumer = self._consumer, None
            try:
                consumer.close()
            except Exception:  # closing a client that never connected: nothing to keep
                pass


def _kafka_error(e: Any) -> str:
    err = e.args[0] if isinstance(e, Exception) and e.args else e
    text = err.str() if hasattr(err, "str") else str(err)
    name = err.name() if hasattr(err, "name") else type(e).__name__
    return f"{name}: {text}"


def group_offsets(admin: Any, group: str, topic: str, timeout_s: float = 10.0) -> dict[int, tuple[int, dict]]:
    """{partition: (committed offset, metadata as a dict)} of `group` for `topic`, through a
    confluent_kafka AdminClient (`list_consumer_group_offsets`). Partitions without a committed
    offset are left out; an unknown group gives {}."""
    from confluent_kafka import ConsumerGroupTopicPartitions

    futures = admin.list_consumer_group_offsets(
        [ConsumerGroupTopicPartitions(group)], request_timeout=timeout_s
    )
    result = futures[group].result()
    return {
        tp.partition: (tp.offset, parse_metadata(tp.metadata))
        for tp in result.topic_partitions
        if tp.topic == topic and tp.offset >= 0  # OFFSET_INVALID (-1001): nothing committed
    }


# ---- the landing ----------------------------------------------------------------------------


def landing_offsets(record: Mapping[str, Any]) -> dict[int, int]:
    """{partition: end offset} to commit for a landed topic: the ends of its HDFS commit record.

    `record` is the commit record itself (`end`: {"<partition>": offset}) or the topic's run
    report, whose partitions' `offset_range` ends are the commit record's ends (no-op runs
    included). A failed topic's report has no commit: {}."""
    if "end" in record:
        return {int(p): int(o) for p, o in record["end"].items()}
    if record.get("status") not in ("landed", "noop"):
        return {}
    return {int(p["partition"]): int(p["offset_range"][1]) for p in record.get("partitions", [])}


def mirror_landing_commit(
    report: dict[str, Any],
    group: str,
    commit: Callable[[str, dict[int, int]], None],
    latest: Mapping[str, Any] | None = None,
) -> dict[str, Any] | None:
    """Commit a landed topic's committed ends to `group` with `commit(topic, offsets)`; record the
    result as `report["consumer_group"]`. A failure is recorded, never raised: the data is
    committed in HDFS, and the next run commits the group again.

    `latest`, the topic's newest commit record read after this run's commit, wins over the
    report: a slower run overlapping a newer one then does not move the group back."""
    offsets = landing_offsets(report)
    if not offsets:
        return None
    if latest is not None and latest.get("end"):
        offsets = landing_offsets(latest)
    result: dict[str, Any] = {
        "group": group,
        "committed": False,
        "offsets": {str(p): o for p, o in sorted(offsets.items())},
        "error": None,
    }
    try:
        commit(report["topic"], offsets)
        result["committed"] = True
    except Exception as e:
        result["error"] = f"{type(e).__name__}: {e}"[:2000]
    report["consumer_group"] = result
    return result
