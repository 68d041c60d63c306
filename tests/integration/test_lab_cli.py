"""The lab's producer and consumer (streamlab.lab) as subprocesses against the real broker."""

from __future__ import annotations

import os
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
