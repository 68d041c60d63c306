"""streamlab.kafka_groups without a broker: what the landing commits to its consumer group, how a
commit is made (standalone, synchronous), and how a group's offsets and metadata are read back."""

from __future__ import annotations

import json
import math
import socket
import time
from types import SimpleNamespace

import pytest

from streamlab import kafka_groups, landing
from streamlab.kafka_groups import GroupCommitError, GroupCommitter
from streamlab.lake import TopicPaths
from tests.streamlab.test_landing import HOUR, T0, TOPIC, FakeKafka, produce_batch, run


@pytest.fixture
def setup(tmp_path):
    """A landing on a local folder with a fake two-partition Kafka (tests/streamlab/test_landing.py)."""
    paths = TopicPaths(TOPIC, raw_root=str(tmp_path / "raw"), quarantine_root=str(tmp_path / "quarantine"))
    return landing.LocalFileSystem(), paths, FakeKafka(partitions=2)


# ---- which offsets the landing commits ---------------------------------------------------------


def test_landing_offsets_are_the_commit_records_ends_after_a_landing_and_a_noop(setup):
    fs, paths, kafka = setup
    produce_batch(kafka, 7, T0)  # partition 0: offsets 0..3, partition 1: 0..2
    first = run(fs, paths, kafka)
    assert first["status"] == "landed"
    record = landing.latest_commit(fs, paths)
    assert kafka_groups.landing_offsets(record) == {0: 4, 1: 3}
    assert kafka_groups.landing_offsets(first) == {0: 4, 1: 3}

    noop = run(fs, paths, kafka)  # nothing new: the group must still sit at the committed ends
    assert noop["status"] == "noop"
    assert kafka_groups.landing_offsets(noop) == kafka_groups.landing_offsets(
        landing.latest_commit(fs, paths)
    )
    assert kafka_groups.landing_offsets(noop) == {0: 4, 1: 3}

    produce_batch(kafka, 4, T0 + HOUR)
    assert kafka_groups.landing_offsets(run(fs, paths, kafka)) == {0: 6, 1: 5}
    assert {p: end for p, (_, end) in kafka.available("t1").items()} == {0: 6, 1: 5}


def test_a_failed_topic_commits_nothing():
    report = {"topic": "t", "status": "error", "error_type": "DataLossError", "error": "gap"}
    assert kafka_groups.landing_offsets(report) == {}
    calls = []
    assert kafka_groups.mirror_landing_commit(report, "g", lambda t, o: calls.append((t, o))) is None
    assert calls == [] and "consumer_group" not in report


def test_mirror_records_the_commit_in_the_report(setup):
    fs, paths, kafka = setup
    produce_batch(kafka, 4, T0)
    report = run(fs, paths, kafka)
    calls = []
    result = kafka_groups.mirror_landing_commit(
        report, "streamlab-landing", lambda t, o: calls.append((t, o))
    )
    assert calls == [("t1", {0: 2, 1: 2})]
    assert (
        report["consumer_group"]
        == result
        == {
            "group": "streamlab-landing",
            "committed": True,
            "offsets": {"0": 2, "1": 2},
            "error": None,
        }
    )
    json.dumps(report)  # the report stays JSON


def test_a_slower_overlapping_run_mirrors_the_newest_commit_not_its_own(setup):
    fs, paths, kafka = setup
    produce_batch(kafka, 4, T0)
    slow = run(fs, paths, kafka)  # committed {0: 2, 1: 2}
    produce_batch(kafka, 4, T0)
    run(fs, paths, kafka)  # a newer run committed meanwhile
    newest = landing.latest_commit(fs, paths)
    calls = []
    kafka_groups.mirror_landing_commit(slow, "g", lambda t, o: calls.append((t, o)), newest)
    assert calls == [("t1", {0: 4, 1: 4})]


def test_a_failed_group_commit_is_recorded_not_raised(setup):
    fs, paths, kafka = setup
    produce_batch(kafka, 2, T0)
    report = run(fs, paths, kafka)

    def refuse(topic, offsets):
        raise GroupCommitError("group 'g': _WAIT_COORD: Local: Waiting for coordinator")

    result = kafka_groups.mirror_landing_commit(report, "g", refuse)
    assert result["committed"] is False
    assert "Waiting for coordinator" in result["error"] and result["offsets"] == {"0": 1, "1": 1}
    assert report["consumer_group"] is result


# ---- the commit itself -------------------------------------------------------------------------


class FakeConsumer:
    def __init__(self, config, fail=None, partition_error=None):
        self.config, self.fail, self.partition_error = config, fail, partition_error
        self.commits, self.subscribed, self.closed = [], False, False

    def subscribe(self, *a, **kw):  # must never be called: the group would get a member
        self.subscribed = True

    def commit(self, offsets=None, asynchronous=True):
        self.commits.append((offsets, asynchronous))
        if self.fail:
            raise self.fail
        # What librdkafka returns: each partition with its own error (None: committed).
        return [
            SimpleNamespace(
                topic=t.topic, partition=t.partition, error=self.partition_error if i == 0 else None
            )
            for i, t in enumerate(offsets)
        ]

    def close(self):
        self.closed = True


def test_committer_commits_synchronously_without_subscribing():
    made = []

    def factory(config):
        made.append(FakeConsumer(config))
        return made[-1]

    c = GroupCommitter("h:9092", "grp", timeout_s=3, consumer_factory=factory)
    c.commit({"b": {1: 7}, "a": {0: 5, 2: 9}}, metadata='{"batch":1}')
    c.commit({"a": {0: 6}})
    [consumer] = made  # one client for every commit
    assert consumer.config["group.id"] == "grp" and consumer.config["enable.auto.commit"] is False
    assert consumer.config["bootstrap.servers"] == "h:9092" and consumer.config["session.timeout.ms"] == 3000
    assert not consumer.subscribed
    (first, sync1), (second, sync2) = consumer.commits
    assert sync1 is False and sync2 is False
    assert [(t.topic, t.partition, t.offset, t.metadata) for t in first] == [
        ("a", 0, 5, '{"batch":1}'),
        ("a", 2, 9, '{"batch":1}'),
        ("b", 1, 7, '{"batch":1}'),
    ]
    assert [(t.topic, t.partition, t.offset, t.metadata) for t in second] == [("a", 0, 6, None)]
    c.close()
    assert consumer.closed


def test_committer_errors_become_group_commit_errors():
    from confluent_kafka import KafkaError, KafkaException

    down = KafkaException(KafkaError(KafkaError._WAIT_COORD, "Commit failed: Local: Waiting for coordinator"))
    c = GroupCommitter("h:9092", "grp", consumer_factory=lambda cfg: FakeConsumer(cfg, fail=down))
    with pytest.raises(GroupCommitError, match="group 'grp'.*Waiting for coordinator"):
        c.commit({"a": {0: 1}})
    refused = KafkaError(KafkaError.UNKNOWN_MEMBER_ID, "The coordinator is not aware of this member")
    c = GroupCommitter(
        "h:9092", "grp", consumer_factory=lambda cfg: FakeConsumer(cfg, partition_error=refused)
    )
    with pytest.raises(GroupCommitError, match=r"a\[0\]: UNKNOWN_MEMBER_ID"):
        c.commit({"a": {0: 1}})


def test_committer_against_no_broker_fails_within_its_timeout():
    """The real librdkafka client, a port nobody listens on: an error, not a hang of 45 s."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again when the block ends: nothing listens there
    c = GroupCommitter(f"127.0.0.1:{port}", "nobody", timeout_s=1.5)
    started = time.monotonic()
    with pytest.raises(GroupCommitError, match="nobody"):
        c.commit({"t": {0: 1}})
    assert time.monotonic() - started < 15
    c.close()


# ---- reading a group back ---------------------------------------------------------------------


class _Done:
    def __init__(self, value):
        self.value = value

    def result(self, timeout=None):
        return self.value


class FakeAdmin:
    def __init__(self, partitions):
        self.partitions, self.asked = partitions, []

    def list_consumer_group_offsets(self, requests, request_timeout=None):
        from confluent_kafka import ConsumerGroupTopicPartitions

        self.asked.append([r.group_id for r in requests])
        return {
            r.group_id: _Done(ConsumerGroupTopicPartitions(r.group_id, self.partitions)) for r in requests
        }


def test_group_offsets_keeps_the_topic_and_parses_the_metadata():
    from confluent_kafka import TopicPartition

    meta = '{"batch":3,"ts":1700000000000,"rows":5}'
    admin = FakeAdmin(
        [
            TopicPartition("t", 0, 12, metadata=meta),
            TopicPartition("t", 1, 4),
            TopicPartition("t", 2, -1001),  # nothing committed for this partition
            TopicPartition("other", 0, 99, metadata=meta),
        ]
    )
    assert kafka_groups.group_offsets(admin, "g", "t") == {
        0: (12, {"batch": 3, "ts": 1700000000000, "rows": 5}),
        1: (4, {}),
    }
    assert admin.asked == [["g"]]
    assert kafka_groups.group_offsets(FakeAdmin([]), "unknown", "t") == {}


def test_metadata_is_compact_json_and_bounded():
    text = kafka_groups.encode_metadata({"batch": 1, "in_rps": math.nan, "rows": 0})
    assert text == '{"batch":1,"in_rps":null,"rows":0}'
    assert kafka_groups.parse_metadata(text) == {"batch": 1, "in_rps": None, "rows": 0}
    assert kafka_groups.parse_metadata(None) == {} == kafka_groups.parse_metadata("not json")
    assert kafka_groups.parse_metadata("[1, 2]") == {}
    with pytest.raises(ValueError, match="4096"):
        kafka_groups.encode_metadata({"x": "y" * 5000})
