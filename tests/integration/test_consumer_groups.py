"""Lag in Kafka's own tools: the landing and the streaming word count mirror their positions into
consumer groups, which `bin/kafka-consumer-groups.sh --describe` shows (docs/landing.md,
docs/streaming.md).

The references are independent: the HDFS commit record read over WebHDFS, the topic's end
offsets from a confluent_kafka client, the group's offsets from AdminClient and from Kafka's
own CLI. Runs against the isolated stack or the developer's (STREAMLAB_TEST_STACK=reuse): every
test uses its own topics and groups.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from streamlab import kafka_groups
from tests.integration.test_landing import committed_end, land, produce, random_values
from tests.integration.test_streaming_wordcount import (  # noqa: F401 (fixtures)
    LINES,
    expected_counts,
    job_and_output,
    names,
)
from tests.integration.test_streaming_wordcount import produce as produce_lines

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


# ---- independent readers --------------------------------------------------------------------------


def end_offsets(stack, topic: str) -> dict[int, int]:
    """The topic's end offsets (high watermarks), from a plain confluent_kafka consumer."""
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": stack.kafka_bootstrap, "group.id": f"it-ends-{uuid.uuid4().hex}"})
    try:
        parts = c.list_topics(topic, timeout=30).topics[topic].partitions
        return {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1] for p in parts}
    finally:
        c.close()


def group_committed(admin, group: str, topic: str) -> dict[int, tuple[int, str | None]]:
    """{partition: (offset, raw metadata)} of `group` for `topic`, straight from AdminClient."""
    from confluent_kafka import ConsumerGroupTopicPartitions

    result = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])[group].result()
    return {
        tp.partition: (tp.offset, tp.metadata)
        for tp in result.topic_partitions
        if tp.topic == topic and tp.offset >= 0
    }


def cli_describe(stack, group: str, topic: str) -> dict[int, dict[str, str]]:
    """The rows of `bin/kafka-consumer-groups.sh --describe --group G` for `topic`, by partition."""
    proc = subprocess.run(
        [str(REPO / "bin" / "kafka-consumer-groups.sh"), "--bootstrap-server", stack.kafka_bootstrap,
         "--describe", "--group", group],
        cwd=REPO, env=stack.env(), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = [line.split() for line in proc.stdout.splitlines() if line.strip()]
    header = next(cols for cols in lines if cols[:2] == ["GROUP", "TOPIC"])
    rows = [dict(zip(header, cols, strict=False)) for cols in lines if len(cols) >= 6 and cols[1] == topic]
    return {int(r["PARTITION"]): r for r in rows}


# ---- the landing --------------------------------------------------------------------------------


@pytest.mark.timeout(900)
def test_landing_group_sits_at_the_committed_ends_after_a_noop_run(stack, new_topic, admin, webhdfs):
    import random

    topic = new_topic("groups", partitions=3)
    produce(stack, topic, random_values(random.Random(11), 300), partitions=3)

    rc, report, out = land(stack, topic, f"{topic}-1")
    assert rc == 0, out[-3000:]
    [t] = report["topics"]
    assert t["status"] == "landed" and t["consumer_group"]["committed"] is True, t.get("consumer_group")
    produce(stack, topic, random_values(random.Random(12), 30), partitions=3)
    rc, report, out = land(stack, topic, f"{topic}-2")
    assert rc == 0, out[-3000:]
    rc, report, out = land(stack, topic, f"{topic}-3")  # nothing new: a no-op run commits too
    assert rc == 0, out[-3000:]
    [t] = report["topics"]
    assert t["status"] == "noop", t
    assert t["consumer_group"] == {
        "group": "streamlab-landing",
        "committed": True,
        "offsets": {str(p): e for p, e in sorted(committed_end(webhdfs, topic).items())},
        "error": None,
    }

    hdfs_ends = committed_end(webhdfs, topic)  # the HDFS commit record: the landing's truth
    kafka_ends = end_offsets(stack, topic)
    assert hdfs_ends == kafka_ends == {0: 110, 1: 110, 2: 110}
    group = group_committed(admin, "streamlab-landing", topic)
    assert {p: o for p, (o, _) in group.items()} == hdfs_ends
    assert {
        p: o for p, (o, _) in kafka_groups.group_offsets(admin, "streamlab-landing", topic).items()
    } == hdfs_ends

    rows = cli_describe(stack, "streamlab-landing", topic)
    assert sorted(rows) == [0, 1, 2], rows
    for row in rows.values():
        assert (int(row["CURRENT-OFFSET"]), int(row["LOG-END-OFFSET"]), row["LAG"]) == (110, 110, "0"), row


@pytest.mark.timeout(900)
def test_a_group_kafka_refuses_does_not_fail_the_landing(stack, new_topic, admin, webhdfs):
    """A group with an active member refuses a standalone commit: the run still succeeds, the
    report says what happened, and the data is committed in HDFS."""
    import random

    from confluent_kafka import Consumer

    topic = new_topic("busygroup")
    produce(stack, topic, random_values(random.Random(13), 20))
    busy = f"it-busy-{uuid.uuid4().hex[:8]}"
    member = Consumer(
        {
            "bootstrap.servers": stack.kafka_bootstrap,
            "group.id": busy,
            "auto.offset.reset": "latest",
            "enable.auto.commit": False,
            # It does not poll while the landing runs: it must stay a member however slow that is.
            "max.poll.interval.ms": 1_800_000,
        }
    )
    assigned = []
    member.subscribe([topic], on_assign=lambda c, parts: assigned.extend(parts))
    try:
        deadline = time.monotonic() + 60
        while not assigned and time.monotonic() < deadline:
            member.poll(0.5)
        assert assigned, "the member of the busy group got no partition"
        rc, report, out = land(stack, topic, f"{topic}-1", "--consumer-group", busy)
        # keep the member alive while the landing commits
        member.poll(0)
    finally:
        member.close()
    assert rc == 0, out[-3000:]
    [t] = report["topics"]
    print("consumer_group of the report:", t.get("consumer_group"))
    assert t["status"] == "landed"
    assert t["consumer_group"]["group"] == busy and t["consumer_group"]["committed"] is False, t[
        "consumer_group"
    ]
    assert t["consumer_group"]["error"], t["consumer_group"]
    assert f"consumer group {busy} failed" in out
    assert committed_end(webhdfs, topic) == {0: 20}
    assert group_committed(admin, busy, topic) == {}


# ---- the streaming word count --------------------------------------------------------------------


@pytest.mark.timeout(600)
def test_streaming_group_reaches_the_end_with_progress_metadata(stack, names, job_and_output, admin):  # noqa: F811
    job, output = job_and_output
    group, topic = names["group"], names["in"]
    job.start()
    produce_lines(stack, topic, LINES)
    output.wait_for(expected_counts(LINES), timeout=180)  # includes the JVM start
    more = [f"{line} #{i}" for i in range(20) for line in LINES]
    produce_lines(stack, topic, more)
    ends = end_offsets(stack, topic)
    assert ends == {0: len(LINES) + len(more)}

    deadline = time.monotonic() + 120
    group_now: dict = {}
    while time.monotonic() < deadline:
        group_now = group_committed(admin, group, topic)
        if {p: o for p, (o, _) in group_now.items()} == ends:
            break
        time.sleep(1)
    else:
        pytest.fail(f"group {group} at {group_now}, the topic ends at {ends}:\n{job.log_tail()}")
    job.assert_running()
    meta = json.loads(group_now[0][1])
    assert set(meta) == {"batch", "ts", "in_rps", "proc_rps", "batch_ms", "rows"}, meta
    assert isinstance(meta["batch"], int) and meta["batch"] >= 1
    assert abs(meta["ts"] - time.time() * 1000) < 300_000, meta  # a progress of this run, in ms
    # The job commits fresh metadata at every (idle) progress: only the offsets are compared.
    read_back = kafka_groups.group_offsets(admin, group, topic)
    assert {p: o for p, (o, _) in read_back.items()} == ends
    assert set(read_back[0][1]) == set(meta), read_back

    rows = cli_describe(stack, group, topic)
    assert rows[0]["CURRENT-OFFSET"] == str(ends[0]) and rows[0]["LAG"] == "0", rows

    # With no new data Spark still reports progress (about every 10 s): the group gets the same
    # offsets with a newer progress time, so a reader can tell the job is alive.
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        [(offset, raw)] = group_committed(admin, group, topic).values()
        later = json.loads(raw)
        if later["ts"] > meta["ts"]:
            break
        time.sleep(1)
    else:
        pytest.fail(f"no newer progress committed in 90 s after {meta}:\n{job.log_tail()}")
    assert offset == ends[0] and later["rows"] == 0, later
