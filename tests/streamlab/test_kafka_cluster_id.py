"""The KRaft cluster id of a local stack: never one a command line takes for an option.

A CI run failed on this: 1 id in 64 starts with "-", and `kafka-storage format -t -RHh...` then
stops with "argument --cluster-id/-t: expected one argument".
"""

from __future__ import annotations

import base64
import uuid

import pytest

from streamlab.config import StackConfig
from streamlab.stack import kafka
from streamlab.stack.java import java_binary

DASH_FIRST = uuid.UUID(bytes=b"\xf8" + bytes(15))  # base64 of 0b111110... begins with "-"


def test_new_ids_never_start_with_a_dash(monkeypatch):
    assert base64.urlsafe_b64encode(DASH_FIRST.bytes).decode().startswith("-")
    draws = iter([DASH_FIRST, DASH_FIRST, uuid.UUID(int=12345)])
    monkeypatch.setattr(kafka.uuid, "uuid4", lambda: next(draws))
    cluster_id = kafka.new_cluster_id()
    assert not cluster_id.startswith("-")
    assert len(cluster_id) == 22 and len(base64.urlsafe_b64decode(cluster_id + "==")) == 16


def test_a_kept_id_that_starts_with_a_dash_still_formats(tmp_path, monkeypatch):
    """Stacks made before the fix keep their id in data/kafka-cluster-id: the real StorageTool
    must accept it (the id is passed as `--cluster-id=<id>`)."""
    monkeypatch.setenv("STREAMLAB_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("STREAMLAB_PROFILE", raising=False)
    cfg = StackConfig.load()
    if not (cfg.jars("kafka")).is_dir():
        pytest.fail(f"no Kafka jars in {cfg.jars('kafka')}: run `make deps` first")
    kafka.write_config(cfg)
    kept = base64.urlsafe_b64encode(DASH_FIRST.bytes).decode().rstrip("=")
    (cfg.home / "data").mkdir(parents=True, exist_ok=True)
    (cfg.home / "data" / "kafka-cluster-id").write_text(kept)
    kafka.format_storage(cfg, java_binary())
    for node in cfg.kafka_nodes:
        meta = (kafka.data_dir(cfg, node) / "meta.properties").read_text()
        assert f"cluster.id={kept}" in meta
