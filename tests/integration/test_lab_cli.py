"""The lab's producer and consumer (streamlab.lab) as subprocesses against the real broker."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
LAB_LINES = [f"offset = {i}, key = {i}, value = {i}" for i in range(10)]


@pytest.fixture
def topic(stack):
    """A fresh one-partition topic, deleted afterwards."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": stack.kafka_bootstrap})
    name = f"it-lab-{uuid.uuid4().hex[:8]}"
    for future in admin.create_topics([NewTopic(name, 1, 1)], operation_timeout=30).values():
        future.result()
    yield name
    for future in admin.delete_topics([name], operation_timeout=30).values():
        future.result()


def lab(*args: str) -> list[str]:
    return [sys.executable, "-m", "streamlab.lab", *args]


def env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(REPO))


def test_producer_then_consumer_reproduce_the_lab_output(stack, topic):
    # Lab order: the consumer listens first, then the producer sends keys/values 0..9.
    consumer = subprocess.Popen(
        lab("consumer", "--bootstrap-servers", stack.kafka_bootstrap, "--topic", topic,
            "--group", f"g-{topic}", "--from-beginning", "--max-messages", "10", "--timeout", "90"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env(), cwd=REPO,
    )  # fmt: skip
    try:
        producer = subprocess.run(
            lab("producer", "--bootstrap-servers", stack.kafka_bootstrap, "--topic", topic),
            capture_output=True, text=True, env=env(), cwd=REPO, timeout=120,
        )  # fmt: skip
        assert producer.returncode == 0, producer.stderr
        assert producer.stdout.splitlines() == ["Message sent successfully"]

        out, err = consumer.communicate(timeout=120)
    finally:
        if consumer.poll() is None:
            consumer.kill()
            consumer.wait()
    assert consumer.returncode == 0, err
    assert out.splitlines() == [f"Subscribed to topic {topic}", *LAB_LINES]

    # Same group again: its offsets were committed, so nothing is read twice.
    again = subprocess.run(
        lab("consumer", "--bootstrap-servers", stack.kafka_bootstrap, "--topic", topic,
            "--group", f"g-{topic}", "--from-beginning", "--timeout", "8"),
        capture_output=True, text=True, env=env(), cwd=REPO, timeout=120,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines() == [f"Subscribed to topic {topic}"]


def test_consumer_timeout_without_enough_records_fails(stack, topic):
    proc = subprocess.run(
        lab("consumer", "--bootstrap-servers", stack.kafka_bootstrap, "--topic", topic,
            "--from-beginning", "--max-messages", "1", "--timeout", "5"),
        capture_output=True, text=True, env=env(), cwd=REPO, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 1
    assert "timed out after 5.0 s with 0/1 record(s)" in proc.stderr


def lab_shell(stack, script: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """The lab's lines in a bash shell that has the stack's environment, as the README says."""
    return subprocess.run(
        ["bash", "-c", f'set -e\neval "$({sys.executable} -m streamlab.stack env)"\n{script}'],
        capture_output=True, text=True, cwd=cwd, timeout=timeout,
        # No locale, as on a bare machine: javac must still read the lab's UTF-8 source.
        env={**{k: v for k, v in os.environ.items() if not k.startswith(("LC_", "LANG"))}, "PATH": "/usr/bin:/bin"},
    )  # fmt: skip


def test_the_labs_lines_verbatim(stack, tmp_path):
    """The lab's own lines, unchanged but for the topic and the test stack's port: tools on PATH
    without bin/, the console producer's removed --broker-list, the lab's SimpleProducer.java
    compiled and run against $KAFKA_HOME/libs, and jps."""
    port = stack.ports["kafka"]
    topic = f"Hello-Kafka-{uuid.uuid4().hex[:6]}"
    for name in ("SimpleProducer.java", "SimpleConsumer.java"):
        source = (REPO / "docs" / "lab" / name).read_text()
        assert '"bootstrap.servers", "localhost:9092"' in source
        (tmp_path / name).write_text(source.replace("localhost:9092", f"localhost:{port}"))
    got = lab_shell(
        stack,
        f"""
kafka-topics.sh --create --topic {topic} --replication-factor 1 --partitions 1 --bootstrap-server localhost:{port}
kafka-topics.sh --list --bootstrap-server localhost:{port}
printf 'Hello Kafka\\nBonjour\\n' | kafka-console-producer.sh --broker-list localhost:{port} --topic {topic}
javac -cp "$KAFKA_HOME/libs/*":. SimpleProducer.java
java -cp "$KAFKA_HOME/libs/*":. SimpleProducer {topic}
javac -cp "$KAFKA_HOME/libs/*":. SimpleConsumer.java
# The lab: the consumer listens (group `test`, from the end), the producer runs again. Until the
# group has its partition, what is sent goes unseen, so the producer runs until it is seen.
timeout 120 java -cp "$KAFKA_HOME/libs/*":. SimpleConsumer {topic} > consumer.out 2> consumer.err &
for attempt in $(seq 40); do
  java -cp "$KAFKA_HOME/libs/*":. SimpleProducer {topic} > /dev/null
  if grep -q "key = 9, value = 9" consumer.out; then break; fi
  sleep 2
done
kill %1 || true
echo ---
kafka-console-consumer.sh --bootstrap-server localhost:{port} --topic {topic} --from-beginning --max-messages 12 --timeout-ms 60000
echo ---
"$KAFKA_HOME/bin/kafka-topics.sh" --describe --topic {topic} --bootstrap-server localhost:{port}
jps
""",
        cwd=tmp_path,
    )
    assert got.returncode == 0, got.stdout + got.stderr
    assert f"Created topic {topic}." in got.stdout
    assert "note: Kafka 4 has no --broker-list; using --bootstrap-server" in got.stderr
    assert "Message envoye avec succes" in got.stdout
    consumed = got.stdout.split("---\n")[1].splitlines()
    assert consumed[:12] == ["Hello Kafka", "Bonjour", *(str(i) for i in range(10))]
    listened = (tmp_path / "consumer.out").read_text().splitlines()
    assert listened[0] == f"Souscris au topic {topic}"
    # The ten records of one producer run, in order, with their offsets in the partition.
    last = listened[-10:]
    first_offset = int(re.match(r"offset = (\d+),", last[0]).group(1))
    assert last == [f"offset = {first_offset + i}, key = {i}, value = {i}" for i in range(10)]
    assert f"Topic: {topic}" in got.stdout
    jps = {line.split()[-1] for line in got.stdout.splitlines() if re.fullmatch(r"\d+ \S+", line)}
    assert {"Kafka", "NameNode", "DataNode"} <= jps, got.stdout
    assert (tmp_path / "SimpleConsumer.class").exists()
