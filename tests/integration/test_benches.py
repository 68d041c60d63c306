"""The benches against the real stack: the streaming bench's --quick mode end to end (both
systems measured, results file and chart written), and its Kafka Streams peer counting the same
words as the Spark job. Figures are checked for presence and sense, never against a time."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from PIL import Image

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def run_quick(bench_file: str, out: Path) -> str:
    """Run `bench/<bench_file> --quick --out <out>`; its stdout. On a timeout it gets SIGTERM:
    its handler stops what it runs and deletes what it created."""
    bench = subprocess.Popen(
        [sys.executable, str(REPO / "bench" / bench_file), "--quick", "--out", str(out)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        stdout, stderr = bench.communicate(timeout=600)
    except subprocess.TimeoutExpired:
        bench.terminate()
        try:
            stdout, stderr = bench.communicate(timeout=300)
        except subprocess.TimeoutExpired:
            bench.kill()
            stdout, stderr = bench.communicate()
    assert bench.returncode == 0, stdout[-3000:] + stderr[-3000:]
    return stdout


def test_streaming_bench_quick_measures_both_systems_and_writes_figures(stack, tmp_path):
    stdout = run_quick("streaming_bench.py", tmp_path)
    results = json.loads((tmp_path / "streaming.json").read_text())
    (only_round,) = results["rounds"]
    assert set(only_round["systems"]) == {"spark", "kafka_streams"}
    for name, run in only_round["systems"].items():
        (lat,) = run["latency"]
        assert lat["rate"] == 1000 and lat["markers"] > 1000, name
        assert lat["lost"] == 0, name  # every marker's count came back
        assert 0 < lat["p50"] <= lat["p99"] <= lat["max"], name
        (tp,) = run["throughput"]
        assert tp["rate"] == 2000 and tp["lines"] > 0, name
        assert run["rss_mib"] > 50, name  # a JVM was measured
    summary = results["summary"]
    assert set(summary["ratios"]) == {"throughput", "p99"} and "1000" in summary["ratios"]["p99"]
    assert "Spark / peer:" in stdout
    with Image.open(tmp_path / "streaming.png") as img:
        assert img.format == "PNG" and img.size[0] > 500
    # The run's topics are gone: its input, both outputs, the peer's repartition and changelog.
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": stack.kafka_bootstrap})
    run_prefix = results["topics"][0].replace("bench-in-", "bench-")
    assert len(results["topics"]) == 3 and results["complete"]
    topics = admin.list_topics(timeout=30).topics
    assert not [t for t in topics if t in results["topics"] or t.startswith(run_prefix)]
    groups = [g.group_id for g in admin.list_consumer_groups().result(30).valid]
    assert not [g for g in groups if g.startswith(run_prefix)]


LINES = [
    b"Hello kafka and zookeeper!",
    "Données d'été, été 2024.".encode(),
    b"HELLO hello_world 42 x42",
    None,
    b"",
    b"   ",
    b"!?,;-- ...",
    b"ab\xffcd",
    b"caf\xc3 \xe2\x82ok",
    b"\xc3\xa9t\xc3\xa9 AB",
    "Ελληνικά ΚΑΦΕΣ Привет МИР 東京 ½ x² İstanbul".encode(),
    "x\ua7cby".encode(),  # a capital letter of Unicode 14: ICU lower-cases it, JDK 17 does not
    b"b" * 1_000_000,  # the longest word counted
    b"c" * 1_000_001 + b" after",  # one byte too long: left out, the rest of the line counted
]


def test_kafka_streams_peer_counts_the_words_the_spark_job_counts(stack, tmp_path):
    """Same input records: the peer's final totals equal the Spark job's transform
    (spark_jobs/wordcount_stream.py, streamlab/textproc.py) on a local SparkSession."""
    from confluent_kafka import Consumer, Producer, TopicPartition
    from confluent_kafka.admin import AdminClient, NewTopic

    from bench.streaming_bench import KafkaStreamsWordCount, parse_args
    from streamlab import deps

    expected = spark_totals(LINES)
    assert expected["b" * 1_000_000] == 1 and "c" * 1_000_001 not in expected

    ident = f"it-peer-{uuid.uuid4().hex[:8]}"
    in_topic, out_topic = f"{ident}-in", f"{ident}-out"
    admin = AdminClient({"bootstrap.servers": stack.kafka_bootstrap})
    new = [NewTopic(in_topic, 1, 1), NewTopic(out_topic, 1, 1, config={"cleanup.policy": "compact"})]
    for f in admin.create_topics(new).values():
        f.result(60)
    producer = Producer({"bootstrap.servers": stack.kafka_bootstrap, "message.max.bytes": 2_000_000})
    for value in LINES:
        producer.produce(in_topic, value)
    assert producer.flush(30) == 0

    deps.build_bench_peer(stack)
    args = parse_args([])
    args.peer_conf = ["input.offset.reset=earliest"]  # the lines are already there
    peer = KafkaStreamsWordCount(stack, in_topic, out_topic, ident, tmp_path / "peer.log", args)
    consumer = Consumer(
        {
            "bootstrap.servers": stack.kafka_bootstrap,
            "group.id": f"{ident}-reader",
            "enable.auto.commit": False,
        }
    )
    consumer.assign([TopicPartition(out_topic, 0, 0)])
    totals: dict[str, int] = {}
    peer.start()
    try:
        deadline = time.monotonic() + 120
        while totals != expected and time.monotonic() < deadline and peer.alive():
            for msg in consumer.consume(1000, timeout=0.5):
                if not msg.error():
                    totals[msg.key().decode()] = int(msg.value())
        log = (tmp_path / "peer.log").read_text()
        assert totals == expected, f"peer totals differ; its log:\n{log[-3000:]}"
    finally:
        consumer.close()
        peer.stop()
        # It left its group on SIGTERM: no member waits out a session timeout.
        (group,) = [f.result(30) for f in admin.describe_consumer_groups([ident]).values()]
        peer.cleanup(admin)
        admin.delete_topics([in_topic, out_topic])
    assert group.members == [], group
    # SIGTERM: a clean close (143 is any JVM's exit code on SIGTERM), the group left and deleted.
    assert peer.proc.returncode == 143
    assert "PENDING_SHUTDOWN -> NOT_RUNNING" in (tmp_path / "peer.log").read_text()
    assert ident not in [g.group_id for g in admin.list_consumer_groups().result(30).valid]


def spark_totals(values: list[bytes | None]) -> dict[str, int]:
    """The Spark job's own transform on a local SparkSession, in a child process: a JVM started
    here would keep its classpath for the whole pytest session (later sessions' jars unseen)."""
    code = (
        "import json, sys\n"
        f"sys.path.insert(0, {str(REPO / 'spark_jobs')!r})\n"
        "from pyspark.sql import SparkSession\n"
        "from pyspark.sql.types import BinaryType, StructField, StructType\n"
        "import wordcount_stream as job\n"
        "values = [None if v is None else bytes.fromhex(v) for v in json.load(sys.stdin)]\n"
        "spark = SparkSession.builder.master('local[1]').config('spark.ui.enabled', 'false').getOrCreate()\n"
        "schema = StructType([StructField('value', BinaryType(), nullable=True)])\n"
        "df = spark.createDataFrame([(v,) for v in values], schema)\n"
        "totals = {r['word']: r['count'] for r in job.running_totals(df).collect()}\n"
        "spark.stop()\n"
        "print(json.dumps(totals))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300,
        input=json.dumps([None if v is None else v.hex() for v in values]),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_landing_bench_quick_measures_the_landing_and_writes_figures(stack, tmp_path):
    """bench/landing_bench.py --quick: both parts measured with sensible figures (every record
    landed, rates from the job's own clock, a no-op run without a JVM), results file and chart
    written, its topics and HDFS folders gone."""
    stdout = run_quick("landing_bench.py", tmp_path)
    results = json.loads((tmp_path / "landing.json").read_text())
    assert results["bench"] == "landing" and results["complete"]
    records = results["settings"]["records"]

    (cp_round,) = results["consumer_perf"]["rounds"]
    assert "error" not in cp_round
    assert cp_round["consumer_perf"]["records"] == records
    assert cp_round["consumer_perf"]["fetch_records_per_s"] > 0
    run = cp_round["landing"]
    assert run["records"] == records and run["spark"] is True and run["status"] == "ok"
    assert run["records_per_s"] > 0 and 0 < run["data_s"] < run["wall_s"]
    assert 0 < run["fixed_s"] < run["wall_s"] and run["spark_startup_s"] > 0
    assert cp_round["ratio"] > 0

    (config,) = results["scale"]["configurations"]
    assert (config["topics"], config["partitions"]) == (2, 2)
    (scale_round,) = config["rounds"]
    assert "error" not in scale_round
    run = scale_round["landing"]
    assert run["records"] == config["records"] == results["settings"]["scale_records"]
    assert [t["records"] for t in run["topics"]] == [config["records"] // 2] * 2
    assert all(t["status"] == "landed" and t["data_s"] > 0 for t in run["topics"])
    assert run["records_per_s"] > 0 and run["fixed_s"] > 0
    noop = scale_round["noop"]
    assert noop["status"] == "ok" and noop["spark"] is False
    assert noop["topics"] == noop["noop_topics"] == 2 and noop["wall_s"] > 0

    summary = results["summary"]
    assert summary["consumer_perf"]["ratio_of_medians"] > 0
    assert summary["scale"]["2x2"]["noop_without_jvm"] is True
    assert summary["goals"]["no_failed_round"] is True
    assert "airflow_noop" not in results  # --quick runs none
    assert "ratio of the medians" in stdout and "round 1/1" in stdout
    with Image.open(tmp_path / "landing.png") as img:
        assert img.format == "PNG" and img.size[0] > 500

    # What it created is gone: its topics, ConsumerPerformance's group, its HDFS folder.
    import hdfs
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": stack.kafka_bootstrap})
    prefix = f"bench-landing-{results['id']}"
    assert len(results["topics"]) == 3 and all(t.startswith(prefix) for t in results["topics"])
    assert not [t for t in admin.list_topics(timeout=30).topics if t.startswith(prefix)]
    assert not [
        g.group_id for g in admin.list_consumer_groups().result(30).valid if g.group_id.startswith(prefix)
    ]
    client = hdfs.InsecureClient(stack.webhdfs_url, user="streamlab")
    assert client.status(f"/bench/{results['id']}", strict=False) is None


def test_memory_bench_quick_measures_every_part_after_its_workload(stack, tmp_path):
    """bench/memory_bench.py --quick: text through the stack's streaming job (its count came
    back), a landing run through Airflow that succeeded, every service measured before and after
    (the streaming job as its own part), results file and chart written."""
    stdout = run_quick("memory_bench.py", tmp_path)
    results = json.loads((tmp_path / "memory.json").read_text())
    assert results["bench"] == "memory" and results["complete"]
    (phase,) = results["stream"]
    assert phase["rate"] == 1000 and phase["lines"] == 5000 and phase["caught_up_s"] is not None
    (run,) = results["runs"]
    assert run["dag_id"] == "kafka_to_hdfs_landing" and run["state"] == "success"
    after = results["after"]
    for name in ("postgres", "kafka", "namenode", "datanode", "airflow-api-server", "airflow-scheduler",
                 "airflow-dag-processor", "airflow-triggerer", "streaming job", "executor workers"):  # fmt: skip
        assert after[name]["processes"] >= 1 and after[name]["rss_mib"] > 10, name
        assert 0 < after[name]["pss_mib"] <= after[name]["rss_mib"] + 1, name
    assert after["streaming job"]["processes"] == 2  # spark-submit's JVM and the Python driver
    summary = results["summary"]
    assert summary["total"]["rss_mib"] == sum(p["rss_mib"] for p in after.values())
    assert summary["total"]["peak_rss_mib"] >= max(s["rss_mib"] for s in results["timeline"]) - 1
    assert summary["goal_met"] in (True, False)  # judged, whatever the figure on this machine
    assert "summed after the workload" in stdout and "the stack's RSS, each page once" in stdout
    with Image.open(tmp_path / "memory.png") as img:
        assert img.format == "PNG" and img.size[0] > 500


def test_stack_bench_quick_starts_restarts_and_stops_an_isolated_stack(stack, tmp_path):
    """bench/stack_bench.py --quick: an isolated stack up, down and up again, its idle memory read,
    down with no process left; results file and chart written (the developer's stack untouched)."""
    stdout = run_quick("stack_bench.py", tmp_path)
    results = json.loads((tmp_path / "stack.json").read_text())
    assert results["bench"] == "stack" and results["complete"]
    (restart,) = results["restarts"]
    assert 0 < restart["healthy_s"] < restart["up_s"]
    assert results["first_up_s"] > 0 and results["noop_up_s"] > 0
    for name in ("postgres", "kafka", "namenode", "datanode", "airflow-api-server", "airflow-scheduler"):
        assert results["idle"][name]["rss_mib"] > 10, name
    from bench.memory_bench import stack_rss_mib

    if stack_rss_mib([os.getpid()]) is not None:  # frame numbers readable: shared pages once
        assert 0 < results["idle_stack_rss_mib"] < results["summary"]["idle_total"]["rss_mib"]
    else:
        assert results["idle_stack_rss_mib"] is None
    assert results["left_after_down"] == 0
    assert "up from stopped to all healthy" in stdout
    with Image.open(tmp_path / "stack.png") as img:
        assert img.format == "PNG" and img.size[0] > 500


BUSY_JAVA = """public class Busy {
  public static void main(String[] args) {
    long end = System.nanoTime() + 3_000_000_000L, x = 1;
    while (System.nanoTime() < end) { x = x * 31 + 7; }
    System.out.println("done " + x);
  }
}
"""


def test_cpu_bench_splits_a_jvm_command_into_its_thread_groups(stack, tmp_path):
    """bench/cpu_bench.py around a JVM (a 3-s busy loop, compiled from source at launch): samples
    taken while it ran, its main thread busy, its JIT compilers seen apart, its output kept."""
    (tmp_path / "Busy.java").write_text(BUSY_JAVA)
    out = tmp_path / "cpu.json"
    bench = subprocess.run(
        [sys.executable, str(REPO / "bench" / "cpu_bench.py"), "--out", str(out), "--",
         "java", "-XX:+UseSerialGC", str(tmp_path / "Busy.java")],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert bench.returncode == 0, bench.stdout[-3000:] + bench.stderr[-3000:]
    results = json.loads(out.read_text())
    assert results["exit_code"] == 0 and any(line.startswith("done ") for _, line in results["lines"])
    assert len(results["samples"]) >= 2
    means = results["means"]
    assert means["command: other"] > 20  # the main thread's loop (a busy core is 100)
    assert any(part.startswith("command: JIT") for part in means), means
    assert any(not part.startswith("command") for part in means), means  # the stack sampled beside it
