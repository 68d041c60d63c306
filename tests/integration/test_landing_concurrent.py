"""Overlapping landing writers on the real stack, with an independent reader the whole time.

The by-hand command of docs/landing.md runs while Airflow-triggered runs of the same topic land,
at random offsets, some SIGKILLed; records are produced between rounds, some with timestamps of
closed hours so that every run also compacts. A reader thread lists and reads the topic folder
over and over (WebHDFS + pyarrow, skipping `_`/`.` names, files in name order) and the newest
landing snapshot; no pass may hold an offset twice or miss a committed one. A zombie (a job
SIGSTOPped while another run lands, then SIGCONTed) must not take effect.
"""

from __future__ import annotations

import io
import json
import os
import random
import signal
import subprocess
import threading
import time
from collections import Counter

import pyarrow.parquet as pq
import pytest

from streamlab import deps

from .test_landing import (
    JOB,
    REPO,
    Airflow,
    check_exactly_once,
    closed_hour_timestamps,
    committed_end,
    land,
    plain_listing,
    produce,
    random_values,
)

pytestmark = pytest.mark.integration


def read_rows(client, paths: list[str]) -> list[tuple[int, int]]:
    out = []
    for path in paths:
        with client.read(path) as f:
            table = pq.read_table(io.BytesIO(f.read()))
        out += zip(table.column("partition").to_pylist(), table.column("offset").to_pylist(), strict=True)
    return out


def moved(e: Exception) -> bool:
    """WebHDFS's answer for a file that is no longer there (FileNotFoundException)."""
    text = str(e)
    return any(x in text for x in ("FileNotFound", "not found", "does not exist"))


class Reader(threading.Thread):
    """Reads the topic like an outside user, over and over, and records what it saw."""

    def __init__(self, client, topic: str):
        super().__init__(daemon=True)
        self.client, self.topic = client, topic
        self.stop = threading.Event()
        self.passes = self.aborted = self.snapshot_passes = 0
        self.failures: list[str] = []

    def run(self) -> None:
        from hdfs.util import HdfsError

        root = f"/data/raw/{self.topic}"
        while not self.stop.is_set():
            try:
                self.live_pass(root)
            except HdfsError as e:  # a file merged away or renamed after the listing: read again
                self.aborted += 1
                if not moved(e):
                    self.failures.append(f"live pass: {e}")
            try:
                self.snapshot_pass(root)
            except HdfsError as e:
                if not moved(e):  # a snapshot deleted by retention while read
                    self.failures.append(f"snapshot pass: {e}")
            except Exception as e:
                self.failures.append(f"snapshot pass: {type(e).__name__}: {e}")

    def check(self, what: str, seen: Counter, end: dict[int, int]) -> None:
        dups = sorted(k for k, c in seen.items() if c > 1)
        if dups:
            self.failures.append(f"{what}: {len(dups)} offsets twice, e.g. {dups[:3]}")
        missing = [(p, o) for p, e in end.items() for o in range(e) if (p, o) not in seen]
        if missing:
            self.failures.append(f"{what}: {len(missing)} committed offsets missing, e.g. {missing[:3]}")

    def live_pass(self, root: str) -> None:
        try:
            end = committed_end(self.client, self.topic)  # committed before the listing
        except Exception:
            return  # no log yet, or trimmed while listed
        files = [p for p, _ in plain_listing(self.client, root)]
        files += [p for p, _ in plain_listing(self.client, root.replace("/raw/", "/quarantine/"))]
        self.check("live pass", Counter(read_rows(self.client, files)), end)
        self.passes += 1

    def snapshot_pass(self, root: str) -> None:
        from hdfs.util import HdfsError

        try:
            names = sorted(n for n in self.client.list(f"{root}/.snapshot") if n.startswith("landed-"))
        except HdfsError:
            return
        if not names:
            return
        snap = f"{root}/.snapshot/{names[-1]}"
        seq = int(names[-1].split("-")[1])
        with self.client.read(f"{snap}/_landing/log/{seq:012d}.commit.json") as f:
            end = {int(p): e for p, e in json.loads(f.read())["end"].items()}
        quarantined = [p for p, _ in plain_listing(self.client, root.replace("/raw/", "/quarantine/"))]
        raw = read_rows(self.client, [p for p, _ in plain_listing(self.client, snap)])
        # quarantine is not compacted (no window): read live, only to complete the picture
        seen = Counter(raw)
        seen.update(k for k in read_rows(self.client, quarantined) if k not in seen)
        # A compaction deletes every landing snapshot (docs/landing.md): one deleted while this
        # pass listed it gave a partial listing (a vanished folder lists as nothing), not a view.
        # Snapshots never change while they exist: one still there after the pass was read whole.
        if self.client.status(snap, strict=False) is None:
            self.aborted += 1
            return
        self.check(f"snapshot {names[-1]}", seen, end)
        self.snapshot_passes += 1


class SnapshotDeletedWhileListed:
    """A WebHDFS client stand-in: one landing snapshot whose `dt=` folder vanishes (a compaction
    released the snapshot) between the listing of the snapshot and the listing of that folder."""

    def __init__(self):
        self.deleted = False
        self.snap = "/data/raw/t/.snapshot/landed-000000000005"

    def list(self, path, status=False):
        from hdfs.util import HdfsError

        if path == "/data/raw/t/.snapshot":
            return ["landed-000000000005"]
        if path == self.snap and not self.deleted:
            self.deleted = True  # the compaction runs now
            return [("dt=2026-12-01", {"type": "DIRECTORY", "length": 0})]
        raise HdfsError(f"File {path} does not exist.")  # the quarantine, the vanished folder

    def read(self, path):
        return io.BytesIO(json.dumps({"end": {"0": 3, "1": 2}}).encode())

    def status(self, path, strict=True):
        return None if self.deleted else {"type": "DIRECTORY"}


def test_a_snapshot_deleted_while_read_is_read_again_not_a_failure():
    reader = Reader(SnapshotDeletedWhileListed(), "t")
    reader.snapshot_pass("/data/raw/t")
    assert reader.failures == [] and reader.aborted == 1 and reader.snapshot_passes == 0


@pytest.mark.timeout(2400)
def test_by_hand_and_airflow_landings_overlap_with_kills_and_a_reader(stack, new_topic, webhdfs):
    seed = int(os.environ.get("STREAMLAB_FAULT_SEED", time.time()))
    rng = random.Random(seed)
    print(f"overlap seed {seed}")
    af = Airflow(stack)
    af.wait_for_dag("kafka_to_hdfs_landing")
    topic = new_topic("overlap", partitions=2)
    conf = json.dumps({"topics": [f"{topic}=text"]})
    produced: dict = {}
    reader = Reader(webhdfs, topic)
    reader.start()
    outcomes, merged = [], 0
    try:
        for i in range(4):
            n = rng.randint(300, 2000)
            produced |= produce(
                stack, topic, random_values(rng, n, 0.02), closed_hour_timestamps(rng, n), partitions=2
            )
            run_id = f"ov-{topic}-{i}"
            af.cli("dags", "trigger", "kafka_to_hdfs_landing", "--run-id", run_id, "--conf", conf)
            time.sleep(rng.uniform(0, 20))  # the Airflow run is starting, planning or writing
            kill_after = rng.uniform(2, 25) if i % 2 == 1 else None
            rc, report, out = land(stack, topic, f"{topic}-hand-{i}", kill_after=kill_after)
            if rc is None:
                outcomes.append(f"round {i}: by hand killed after {kill_after:.1f} s")
            else:
                [t] = report["topics"]
                assert rc == 0 or t.get("error_type") == "ConcurrentRunError", out[-3000:]
                outcomes.append(f"round {i}: by hand {t['status']} {t.get('error_type', '')}")
                merged += (t.get("compaction") or {}).get("merged_groups", 0)
            assert af.wait_for_run("kafka_to_hdfs_landing", run_id, timeout=900) == "success"
            [t] = af.xcom("kafka_to_hdfs_landing", run_id, "report")["topics"]
            merged += (t.get("compaction") or {}).get("merged_groups", 0)
            outcomes.append(f"round {i}: airflow {t['status']}")
            check_exactly_once(webhdfs, topic, produced, complete=False)
        rc, report, out = land(stack, topic, f"{topic}-final")
        assert rc == 0, out[-3000:]
        merged += (report["topics"][0].get("compaction") or {}).get("merged_groups", 0)
        check_exactly_once(webhdfs, topic, produced, complete=True)
        time.sleep(5)  # a few more passes over the final state
    finally:
        reader.stop.set()
        reader.join(120)
    print("\n".join(outcomes))
    print(f"reader: {reader.passes} live passes ({reader.aborted} restarted after a file moved), "
          f"{reader.snapshot_passes} snapshot passes; {merged} groups merged")  # fmt: skip
    assert not reader.failures, reader.failures[:5]
    assert reader.passes >= 10 and reader.snapshot_passes >= 3
    assert merged > 0, "no compaction ran: the test did not exercise it"


@pytest.mark.timeout(1200)
def test_frozen_landing_job_resumed_after_another_run_landed_takes_no_effect(stack, new_topic, webhdfs):
    """SIGSTOP a by-hand job once its Spark tasks wrote the staging (before it decides), land
    with another run, SIGCONT: the frozen run fails with ConcurrentRunError, nothing twice."""
    rng = random.Random(5)
    topic = new_topic("zombie", partitions=2)
    produced = produce(stack, topic, random_values(rng, 2000, 0.01), partitions=2)
    cmd = [
        str(REPO / "bin" / "spark-submit"), "--name", "kafka_to_hdfs_landing",
        "--py-files", str(deps.ensure_python_archive()), str(JOB), "--bootstrap-servers", stack.kafka_bootstrap,
        "--topic", f"{topic}=text", "--run-id", f"{topic}-zombie",
    ]  # fmt: skip
    zombie = subprocess.Popen(
        cmd, cwd=REPO, env=stack.env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )  # fmt: skip
    lines = []
    for line in zombie.stdout:  # the writer's summary line: staging written, not yet decided
        lines.append(line)
        if "undecodable)" in line:
            os.killpg(zombie.pid, signal.SIGSTOP)
            break
    assert zombie.poll() is None, "".join(lines)[-3000:]
    try:
        produced |= produce(stack, topic, random_values(rng, 500, 0.0), partitions=2)
        rc, report, out = land(stack, topic, f"{topic}-meanwhile")
        assert rc == 0, out[-3000:]
        assert any("aborted" in n for n in report["topics"][0]["recovered"]), report["topics"][0]
        check_exactly_once(webhdfs, topic, produced, complete=True)
        before = plain_listing(webhdfs, f"/data/raw/{topic}")
    finally:
        os.killpg(zombie.pid, signal.SIGCONT)
    rest, _ = zombie.communicate(timeout=600)
    out = "".join(lines) + rest
    assert zombie.returncode == 1, out[-3000:]
    [t] = json.loads(next(x for x in out.splitlines() if x.startswith("LANDING_REPORT_JSON "))[20:])["topics"]
    assert t["status"] == "error" and t["error_type"] == "ConcurrentRunError", t
    assert plain_listing(webhdfs, f"/data/raw/{topic}") == before
    check_exactly_once(webhdfs, topic, produced, complete=True)
