"""Topics as code against the real broker: create, re-run (no-op), grow, drift, config drift.

Every test uses its own uniquely named topics (deleted at the end), so it can run against the
developer's stack (STREAMLAB_TEST_STACK=reuse) without touching the platform's topics.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from streamlab import topics
from streamlab.topics import (
    ADD_PARTITIONS,
    CREATE,
    DELETE_CONFIG,
    SET_CONFIG,
    Action,
    TopicDriftError,
    TopicProvisionError,
    TopicSpec,
)

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def admin(stack):
    from confluent_kafka.admin import AdminClient

    return AdminClient({"bootstrap.servers": stack.kafka_bootstrap})


@pytest.fixture
def names(request, admin):
    """Factory of unique topic names; the topics are deleted after the test."""
    made: list[str] = []
    base = re.sub(r"[^A-Za-z0-9]+", "-", request.node.name)[:60].strip("-")

    def make(suffix: str = "t") -> str:
        name = f"it-{base}-{suffix}-{uuid.uuid4().hex[:8]}"
        made.append(name)
        return name

    yield make
    existing = set(admin.list_topics(timeout=10).topics)
    doomed = [n for n in made if n in existing]
    if doomed:
        for future in admin.delete_topics(doomed, operation_timeout=30).values():
            future.result()


def cluster(admin, name: str) -> topics.TopicState:
    return topics.describe_cluster_topics(admin, [name])[name]


def alter(admin, name: str, **ops: str | None) -> None:
    """Out-of-band config change, as an operator with the Kafka CLI would make it."""
    from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource, ResourceType

    entries = [
        ConfigEntry(
            key.replace("_", "."),
            value,
            incremental_operation=AlterConfigOpType.DELETE if value is None else AlterConfigOpType.SET,
        )
        for key, value in ops.items()
    ]
    resource = ConfigResource(ResourceType.TOPIC, name, incremental_configs=entries)
    for future in admin.incremental_alter_configs([resource]).values():
        future.result()


def test_provision_twice_second_run_is_a_no_op(admin, names):
    a, b = names("in"), names("out")
    desired = [
        TopicSpec(a, 2, 1, {"retention.ms": "3600000"}),
        TopicSpec(b, 1, 1, {"cleanup.policy": "compact"}),
    ]
    first = topics.apply(admin, desired)
    assert first.status == "changed"
    assert [(x.topic, x.kind) for x in first.actions] == [(a, CREATE), (b, CREATE)]
    assert first.applied

    state = cluster(admin, a)
    assert (state.partitions, state.replication_factor) == (2, 1)
    assert state.configs["retention.ms"] == "3600000"
    assert cluster(admin, b).configs["cleanup.policy"] == "compact"

    second = topics.apply(admin, desired)
    assert second.actions == []
    assert second.status == "in sync"
    assert not second.applied
    assert second.summary().startswith("in sync")


def test_more_partitions_in_the_file_are_added(admin, names):
    a = names()
    topics.apply(admin, [TopicSpec(a, 1, 1)])
    report = topics.apply(admin, [TopicSpec(a, 3, 1)])
    assert report.actions == [Action(a, ADD_PARTITIONS, "partitions", "1", "3")]
    assert cluster(admin, a).partitions == 3
    assert topics.apply(admin, [TopicSpec(a, 3, 1)]).status == "in sync"


def test_fewer_partitions_in_the_file_fail_loudly(admin, names):
    a = names()
    topics.apply(admin, [TopicSpec(a, 3, 1)])
    with pytest.raises(TopicDriftError) as err:
        topics.apply(admin, [TopicSpec(a, 1, 1)])
    assert f"{a}: DRIFT partitions is 3 on the cluster but 1 in the file" in str(err.value)
    assert err.value.report.status == "drift"
    assert cluster(admin, a).partitions == 3  # nothing removed


def test_replication_drift_fails_loudly_after_the_safe_changes(admin, names):
    a, other = names("drifted"), names("fine")
    topics.apply(admin, [TopicSpec(a, 1, 1)])
    # The cluster profile's override, read from the environment as in production.
    doc = {
        "topics": [
            {"name": a, "partitions": 1, "replication_factor": 1, "configs": {"retention.ms": "7200000"}},
            {"name": other, "partitions": 1, "replication_factor": 1},
        ]
    }
    desired = topics.parse_topics(doc, env={"STREAMLAB_TOPIC_REPLICATION_FACTOR": "2"})
    assert [s.replication_factor for s in desired] == [2, 2]
    # The missing topic cannot be created with RF 2 on a 1-broker stack: only check the drift on `a`.
    with pytest.raises(TopicDriftError) as err:
        topics.apply(admin, desired[:1])
    message = str(err.value)
    assert f"{a}: DRIFT replication_factor is 1 on the cluster but 2 in the file" in message
    assert "reassignment" in message
    # The config change of the same run was applied all the same, and reported.
    [change] = err.value.report.changes
    assert (change.topic, change.kind, change.field, change.desired) == (
        a,
        SET_CONFIG,
        "retention.ms",
        "7200000",
    )
    assert cluster(admin, a).configs["retention.ms"] == "7200000"
    assert cluster(admin, a).replication_factor == 1


def test_creating_with_more_replicas_than_brokers_names_the_topic(admin, names):
    a = names()
    brokers = len(admin.list_topics(timeout=10).brokers)
    with pytest.raises(TopicProvisionError) as err:
        topics.apply(admin, [TopicSpec(a, 1, brokers + 1)])
    assert f"topic {a!r}: create failed: INVALID_REPLICATION_FACTOR" in str(err.value)


def test_config_drift_is_altered_back_and_reported(admin, names):
    a = names()
    desired = [TopicSpec(a, 1, 1, {"retention.ms": "3600000", "cleanup.policy": "compact"})]
    topics.apply(admin, desired)
    alter(admin, a, retention_ms="1000", max_message_bytes="2000000")  # someone's manual change

    report = topics.apply(admin, desired)
    assert report.status == "changed"
    assert report.actions == [
        Action(a, SET_CONFIG, "retention.ms", "1000", "3600000"),
        Action(a, DELETE_CONFIG, "max.message.bytes", "2000000", None),
    ]
    table = report.table()
    assert "retention.ms" in table and "max.message.bytes" in table

    state = cluster(admin, a)
    assert state.configs["retention.ms"] == "3600000"
    assert "max.message.bytes" not in state.overrides
    assert topics.apply(admin, desired).status == "in sync"


def test_cli_dry_run_and_apply(stack, names, tmp_path):
    a = names()
    path = tmp_path / "topics.yaml"
    path.write_text(f"topics:\n  - {{name: {a}, partitions: 1, replication_factor: 1}}\n")
    env = dict(os.environ, PYTHONPATH=str(REPO))

    def cli(*args: str) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", "streamlab.topics", "--file", str(path)]
        cmd += ["--bootstrap-servers", stack.kafka_bootstrap, *args]
        return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=120)

    dry = cli("--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "1 change(s) planned" in dry.stdout
    first = cli()
    assert first.returncode == 0, first.stderr
    assert "1 change(s) applied" in first.stdout
    again = cli()
    assert again.returncode == 0, again.stderr
    assert "in sync" in again.stdout

    path.write_text(f"topics:\n  - {{name: {a}, partitions: 1, replication_factor: 7}}\n")
    drift = cli()
    assert drift.returncode == 1
    assert "DRIFT replication_factor is 1 on the cluster but 7 in the file" in drift.stderr


def test_dag_applies_the_file_through_the_kafka_connection(stack, admin, names, tmp_path):
    """`airflow dags test kafka_topics_provision` with a topics file of test topics."""
    a = names()
    path = tmp_path / "topics.yaml"
    path.write_text(f"topics:\n  - {{name: {a}, partitions: 2, replication_factor: 1}}\n")
    env = stack.env()
    env["STREAMLAB_TOPICS_FILE"] = str(path)
    airflow = str(Path(sys.executable).parent / "airflow")
    dag_id = "kafka_topics_provision"

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [airflow, *args], capture_output=True, text=True, env=env, cwd=REPO, timeout=300
        )

    # The stack's scheduler shares this metadata DB: with the DAG unpaused it may take the task
    # instance `dags test` just queued and run it itself (without our topics file), and `dags
    # test` then fails with "TI was not in a state where it could be marked as running". A
    # paused DAG is left alone by the scheduler, and `dags test` runs it regardless.
    paused = cli("dags", "pause", dag_id)
    assert paused.returncode == 0, paused.stderr[-3000:]
    try:
        proc = cli("dags", "test", dag_id)
    finally:
        cli("dags", "unpause", dag_id)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-5000:]
    assert "1 change(s) applied" in output, output[-5000:]
    assert cluster(admin, a).partitions == 2
