"""`make demo`: the platform at work, end to end, on the running stack.

1. produces a short English + French text to `Hello-Kafka` (with a marker word unique to this
   demo run, so its arrival is visible);
2. waits until the streaming word count has folded it into `wordcounts` and prints the running
   totals of the text's words, plus the tail of the lab's `out` file;
3. triggers `kafka_to_hdfs_landing` and lists the Parquet files landed in HDFS;
4. shows the latest published day of `/data/curated/wordcount` (batch reprocessing), if any.
"""

from __future__ import annotations

import json
import posixpath
import re
import sys
import time
import urllib.request
import uuid

from streamlab import lake
from streamlab.config import StackConfig

SAMPLE = [
    "Hello Kafka and Zookeeper!",
    "Kafka collects text; Spark counts the words, 24/7.",
    "Données d'été : le bus Kafka collecte, Spark compte.",
    "HDFS keeps the same data for batch processing.",
]


def produce(cfg: StackConfig, lines: list[str]) -> None:
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": cfg.kafka_bootstrap, "acks": "all"})
    for line in lines:
        producer.produce("Hello-Kafka", value=line.encode())
    if producer.flush(30):
        sys.exit("could not deliver the demo text to Kafka: is the stack up? (`make status`)")


def latest_counts(cfg: StackConfig, words: set[str], marker: str, timeout: float) -> dict[str, int]:
    """Latest value per key on `wordcounts` (read from the start), once `marker` is counted."""
    from confluent_kafka import Consumer

    consumer = Consumer(
        {
            "bootstrap.servers": cfg.kafka_bootstrap,
            "group.id": f"demo-{uuid.uuid4()}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe(["wordcounts"])
    latest: dict[str, int] = {}
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None or msg.error():
                if marker in latest:
                    break
                continue
            word = msg.key().decode("utf-8", "replace")
            if word in words:
                latest[word] = int(msg.value())
    finally:
        consumer.close()
    return latest


def main() -> int:
    cfg = StackConfig.load()
    marker = f"demo{uuid.uuid4().hex[:6]}"
    lines = [*SAMPLE, f"marker {marker}"]
    words = {w for line in lines for w in re.findall(r"[^\W_]+", line.lower())}
    print(f"1. producing {len(lines)} lines to Hello-Kafka ({cfg.kafka_bootstrap}):")
    for line in lines:
        print(f"     {line}")
    produce(cfg, lines)

    print("\n2. running totals on topic `wordcounts` (everything ever counted):")
    counts = latest_counts(cfg, words, marker, timeout=120)
    if marker not in counts:
        print(
            "   the streaming word count has not counted the text within 120 s: is DAG "
            "streaming_wordcount running? (`bin/airflow dags list-runs streaming_wordcount`)"
        )
        return 1
    for word in sorted(counts, key=lambda w: (-counts[w], w)):
        print(f"     {word:12} {counts[word]}")
    out = cfg.home / "out"
    deadline = time.monotonic() + 15  # the table is appended once its micro-batch is written
    while out.exists() and marker not in out.read_text(errors="replace") and time.monotonic() < deadline:
        time.sleep(0.5)
    if out.exists():
        print(f"\n   last lines of the lab's console output {out}:")
        for line in out.read_text(errors="replace").splitlines()[-8:]:
            print(f"     {line}")

    return batch_part(cfg)


def batch_part(cfg: StackConfig) -> int:
    from streamlab.airflow_client import AirflowClient

    client = AirflowClient(cfg)
    if client.dag("kafka_to_hdfs_landing") is None:
        print("\n3. (the landing DAG is not deployed: no batch part)")
        return 0
    print("\n3. landing Kafka into HDFS: triggering kafka_to_hdfs_landing ...")
    run_id = client.trigger("kafka_to_hdfs_landing")["dag_run_id"]
    deadline = time.monotonic() + 300
    state = "queued"
    while time.monotonic() < deadline:
        state = client.get(f"/dags/kafka_to_hdfs_landing/dagRuns/{run_id}")["state"]
        if state in ("success", "failed"):
            break
        time.sleep(3)
    print(f"   run {run_id}: {state}")
    for path, size in list_files(cfg, lake.TopicPaths("Hello-Kafka").root)[-10:]:
        print(f"     {size:>10}  {path}")

    curated = (
        posixpath.relpath(p, lake.WORDCOUNT_ROOT).split("/")[0]
        for p, _ in list_files(cfg, lake.WORDCOUNT_ROOT)
    )
    days = sorted({d for d in curated if d.startswith("dt=")})
    print("\n4. batch reprocessing (DAG hdfs_batch_reprocessing, daily, backfillable):")
    if not days:
        print(
            "   no day published yet: a day is reprocessed once its landing is complete, or "
            "backfill past days with `bin/airflow backfill create --dag-id hdfs_batch_reprocessing "
            "--from-date YYYY-MM-DD --to-date YYYY-MM-DD`"
        )
    else:
        print(f"   published days: {', '.join(days[-5:])}")
    return 0 if state == "success" else 1


def list_files(cfg: StackConfig, root: str) -> list[tuple[str, int]]:
    """Recursive WebHDFS listing of plain files (names starting with _ or . skipped)."""
    found: list[tuple[str, int]] = []
    todo = [root]
    while todo:
        folder = todo.pop()
        url = f"{cfg.webhdfs_url}/webhdfs/v1{folder}?op=LISTSTATUS&user.name=streamlab"
        try:
            with urllib.request.urlopen(url, timeout=30) as resp:
                statuses = json.loads(resp.read())["FileStatuses"]["FileStatus"]
        except OSError:
            continue
        for st in statuses:
            name = st["pathSuffix"]
            if name.startswith(("_", ".")):
                continue
            path = f"{folder}/{name}"
            if st["type"] == "DIRECTORY":
                todo.append(path)
            else:
                found.append((path, st["length"]))
    return sorted(found)


if __name__ == "__main__":
    sys.exit(main())
