"""Fixtures shared by the landing tests: Kafka admin, WebHDFS, and unique topics cleaned up after."""

from __future__ import annotations

import uuid

import pytest

from streamlab import landing


@pytest.fixture(scope="module")
def admin(stack):
    from confluent_kafka.admin import AdminClient

    return AdminClient({"bootstrap.servers": stack.kafka_bootstrap})


@pytest.fixture(scope="module")
def webhdfs(stack):
    import hdfs

    return hdfs.InsecureClient(stack.webhdfs_url, user="streamlab")


@pytest.fixture
def new_topic(admin, webhdfs):
    """Factory of unique topics; at the end the topics, their HDFS folders and reports go."""
    made = []

    def make(prefix: str, partitions: int = 1, config: dict | None = None) -> str:
        from confluent_kafka.admin import NewTopic

        name = f"lt-{prefix}-{uuid.uuid4().hex[:8]}"
        admin.create_topics([NewTopic(name, partitions, 1, config=config or {})])[name].result()
        made.append(name)
        return name

    yield make
    if made:
        for f in admin.delete_topics(made, operation_timeout=30).values():
            f.result()
    reports = (
        webhdfs.list("/data/_landing/reports")
        if webhdfs.status("/data/_landing/reports", strict=False)
        else []
    )
    for name in made:
        root = f"/data/raw/{name}"
        landing.release_snapshots(webhdfs, root)  # HDFS keeps a folder that holds snapshots
        webhdfs.delete(root, recursive=True)
        webhdfs.delete(f"/data/quarantine/{name}", recursive=True)
        for report in reports:
            if name in report:
                webhdfs.delete(f"/data/_landing/reports/{report}")
