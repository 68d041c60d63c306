"""Two attempts of the daily word count of one day at once, on the real stack (Kafka, HDFS, Spark).

A reader thread polls `/data/curated/wordcount/dt=<day>/` over WebHDFS while both run: never a
folder inside it, never a visible file other than the one data file, and a `_SUCCESS` that stayed
the same across the listing names the data file's length. At the end the result equals an
independent count, and the temporary folders left by killed attempts are removed by age only.
"""

from __future__ import annotations

import io
import json
import random
import subprocess
import threading
import time
from datetime import datetime, timedelta, timezone

import pyarrow.parquet as pq
import pytest

from streamlab import deps
from tests.integration.test_landing import REPO, _utf8, independent_count, land, produce, random_values

pytestmark = pytest.mark.integration

JOB = REPO / "spark_jobs" / "batch_wordcount.py"
ROOT = "/data/curated/wordcount"
SUMMARY_MARKER = "WORDCOUNT_SUMMARY_JSON "


def wordcount(stack, day: str, topic: str, run_id: str) -> subprocess.Popen:
    cmd = [
        str(REPO / "bin" / "spark-submit"), "--name", "batch_wordcount",
        "--py-files", str(deps.ensure_python_archive()), str(JOB),
        "--date", day, "--topic", topic, "--run-id", run_id,
    ]  # fmt: skip
    return subprocess.Popen(
        cmd, cwd=REPO, env=stack.env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def failure(out: str) -> str:
    """A failed job's exception lines (a Java stack trace hides them from the tail), then its tail."""
    causes = [ln for ln in out.splitlines() if ("Exception" in ln or "Error" in ln) and "\tat " not in ln]
    return "\n".join(causes[-10:]) + "\n...\n" + out[-2000:]


def read_summary(client, path: str) -> dict | None:
    from hdfs.util import HdfsError

    try:
        with client.read(path) as f:
            return json.loads(f.read())
    except HdfsError:
        return None


@pytest.mark.timeout(1200)
def test_two_attempts_of_one_day_at_once_publish_one_complete_result(stack, new_topic, webhdfs):
    topic = new_topic("batchpub", partitions=2, config={"retention.ms": "-1"})
    rng = random.Random(11)
    day = datetime(2023, 5, 1, tzinfo=timezone.utc) + timedelta(days=rng.randint(0, 200))
    name = f"{day:%Y-%m-%d}"
    final = f"{ROOT}/dt={name}"
    values = random_values(rng, 600)
    stamps = [int((day + timedelta(seconds=rng.randint(0, 86399))).timestamp() * 1000) for _ in values]
    produced = produce(stack, topic, values, stamps, partitions=2)
    rc, _, out = land(stack, topic, f"{topic}-land")
    assert rc == 0, out[-3000:]

    webhdfs.delete(final, recursive=True)
    now_ms = int(time.time() * 1000)
    old_leftover = f"{ROOT}/_tmp-dt={name}-{topic[-8:]}old"  # the older versions' name, killed 2 days ago
    live_other = f"{ROOT}/_tmp-dt={name}-{topic[-8:]}live"  # another attempt (older name) computing now
    for folder in (old_leftover, live_other):
        webhdfs.write(f"{folder}/part-00000.parquet", data=b"not a result", overwrite=True)
    webhdfs.set_times(f"{old_leftover}/part-00000.parquet", modification_time=now_ms - 2 * 86400_000)
    webhdfs.set_times(old_leftover, modification_time=now_ms - 2 * 86400_000)

    problems: list[str] = []
    seen = {"listings": 0, "with_success": 0}
    stop = threading.Event()

    def reader() -> None:
        from hdfs.util import HdfsError

        while not stop.is_set():
            before = read_summary(webhdfs, f"{final}/_SUCCESS")
            try:
                listing = webhdfs.list(final, status=True)
            except HdfsError:
                continue  # not published yet
            after = read_summary(webhdfs, f"{final}/_SUCCESS")
            seen["listings"] += 1
            dirs = [n for n, st in listing if st["type"] == "DIRECTORY"]
            data = {
                n: st["length"] for n, st in listing if not n.startswith(("_", ".")) and st["type"] == "FILE"
            }
            if dirs:
                problems.append(f"folders inside {final}: {dirs}")
            if list(data) != ["part-00000.parquet"]:
                problems.append(f"visible files {sorted(data)}")
            if before and after and before["attempt"] == after["attempt"] and "_SUCCESS" in dict(listing):
                seen["with_success"] += 1
                if before["data_bytes"] != data.get("part-00000.parquet"):
                    problems.append(
                        f"_SUCCESS of {before['attempt']} ({before['data_bytes']} B) beside {data}"
                    )
            time.sleep(0.05)

    watcher = threading.Thread(target=reader, daemon=True)
    watcher.start()
    try:
        procs = [wordcount(stack, name, topic, f"{topic}-attempt-{i}") for i in (1, 2)]
        outs = [p.communicate(timeout=900)[0] for p in procs]
    finally:
        stop.set()
        watcher.join(30)
    for p, out in zip(procs, outs, strict=True):
        assert p.returncode == 0, failure(out)
    summaries = [
        json.loads(line[len(SUMMARY_MARKER) :])
        for out in outs
        for line in out.splitlines()
        if line.startswith(SUMMARY_MARKER)
    ]
    assert len(summaries) == 2
    print("publications:", [s["publication"] for s in summaries], "reader:", seen)
    assert not problems, problems[:5]
    assert seen["listings"] > 0

    listing = dict(webhdfs.list(final, status=True))
    assert sorted(listing) == ["_SUCCESS", "part-00000.parquet"]
    summary = read_summary(webhdfs, f"{final}/_SUCCESS")
    assert summary["attempt"] in {s["attempt"] for s in summaries}
    assert summary["data_bytes"] == listing["part-00000.parquet"]["length"]
    with webhdfs.read(f"{final}/part-00000.parquet") as f:
        t = pq.read_table(io.BytesIO(f.read()))
    counts = dict(zip(t.column("word").to_pylist(), t.column("count").to_pylist(), strict=True))
    expected = independent_count([v.decode() for v, _ in produced.values() if _utf8(v)])
    assert counts == dict(expected)
    assert summary["tokens"] == sum(counts.values()) and summary["records"] == 600

    left = [n for n in webhdfs.list(ROOT) if name in n and n.startswith("_")]
    assert left == [live_other.rsplit("/", 1)[1]], left  # the day-old one went, the live one stayed
    webhdfs.delete(live_other, recursive=True)
    webhdfs.delete(final, recursive=True)
