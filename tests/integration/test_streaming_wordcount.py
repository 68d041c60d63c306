"""The streaming word count on the real stack: exact counts, kill -9, bad input, Airflow supervision.

Every test uses its own input/output topics and checkpoint. The expected counts come from an
independent tokenizer (`re.findall(r"[^\\W_]+", s.lower())`), never from streamlab/textproc.py.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import pytest

from streamlab import deps
from streamlab.airflow_client import AirflowClient
from streamlab.stack import processes
from tests.conftest import run_stack

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
JOB = REPO / "spark_jobs" / "wordcount_stream.py"
DAG_ID = "streaming_wordcount"
MIB = 1024 * 1024
MAX_WORD_BYTES = 1_000_000  # the job's documented default (--max-word-bytes)

# Text not written for this project: public-domain openings (Dickens, Hugo, Austen, Proust),
# with their punctuation, digits and accents.
TEXT = """\
It was the best of times, it was the worst of times, it was the age of wisdom,
it was the age of foolishness, it was the epoch of belief, it was the epoch of incredulity...
In 1775, there were a king with a large jaw and a queen with a plain face, on the throne of England;
En 1815, M. Charles-François-Bienvenu Myriel était évêque de Digne.
C'était un vieillard d'environ soixante-quinze ans ; il occupait le siège de Digne depuis 1806.
Quoique ce détail ne touche en aucune manière au fond même de ce que nous avons à raconter...
It is a truth universally acknowledged, that a single man in possession of a good fortune,
must be in want of a wife. «Longtemps, je me suis couché de bonne heure.» Parfois, à peine
ma bougie éteinte, mes yeux se fermaient si vite que je n'avais pas le temps de me dire : « Je m'endors. »
Numéros: 42, 3.14159, 2nd, 1er, N°7 -- x_y_z; e-mail: someone@example.org; Ça coûte 12€50 (douze euros).
"""
LINES = TEXT.splitlines()


# ---- independent expectation ------------------------------------------------------------------


def expected_counts(values: Iterable[bytes | str | None]) -> dict[str, str]:
    """Word -> count (as the decimal string the job writes), computed without the job's code."""
    counts: Counter[str] = Counter()
    for value in values:
        if value is None:
            continue
        text = value.decode("utf-8", errors="replace") if isinstance(value, bytes) else value
        counts.update(
            w for w in re.findall(r"[^\W_]+", text.lower()) if len(w.encode("utf-8")) <= MAX_WORD_BYTES
        )
    return {word: str(n) for word, n in counts.items()}


# ---- Kafka helpers ------------------------------------------------------------------------------


def create_topics(stack, *names: str, compacted: tuple[str, ...] = ()) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": stack.kafka_bootstrap})
    big = {"max.message.bytes": str(4 * MIB)}  # room for the 1 MiB line (the broker default is 1 MiB)
    futures = admin.create_topics(
        [
            NewTopic(n, 1, 1, config={**big, **({"cleanup.policy": "compact"} if n in compacted else {})})
            for n in names
        ]
    )
    for future in futures.values():
        future.result(timeout=60)


def cleanup(stack, topics: list[str], checkpoints: list[str]) -> None:
    """Delete a test's topics and checkpoints (matters when reusing a developer's stack)."""
    from confluent_kafka.admin import AdminClient
    from hdfs import InsecureClient

    admin = AdminClient({"bootstrap.servers": stack.kafka_bootstrap})  # kept alive for its futures
    for future in admin.delete_topics(topics).values():
        try:
            future.result(timeout=60)
        except Exception as err:  # best effort
            print(f"could not delete a topic: {err}")
    client = InsecureClient(stack.webhdfs_url, user="streamlab")
    for path in checkpoints:
        try:
            client.delete(path, recursive=True)
        except Exception as err:
            print(f"could not delete {path}: {err}")


def produce(stack, topic: str, values: Iterable[bytes | str | None], pace_s: float = 0.0) -> None:
    from confluent_kafka import Producer

    producer = Producer(
        {"bootstrap.servers": stack.kafka_bootstrap, "acks": "all", "message.max.bytes": 4 * MIB}
    )
    for value in values:
        data = value.encode("utf-8") if isinstance(value, str) else value
        producer.produce(topic, value=data)
        producer.poll(0)
        if pace_s:
            time.sleep(pace_s)
    assert producer.flush(60) == 0, "some records were not delivered"


class LatestValues:
    """Reads a (compacted) topic from the beginning and keeps the latest value of each key."""

    def __init__(self, stack, topic: str):
        from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

        self.consumer = Consumer(
            {
                "bootstrap.servers": stack.kafka_bootstrap,
                "group.id": f"it-{uuid.uuid4().hex}",
                "enable.auto.commit": False,
                "fetch.message.max.bytes": 8 * MIB,
            }
        )
        self.consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        self.latest: dict[str, str] = {}

    def poll(self, seconds: float) -> dict[str, str]:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            for msg in self.consumer.consume(1000, timeout=0.2):
                if msg.error():
                    continue
                self.latest[msg.key().decode("utf-8")] = msg.value().decode("utf-8")
        return self.latest

    def wait_for(self, expected: dict[str, str], timeout: float) -> None:
        """Until the latest values equal `expected` exactly (no missing, extra or wrong word)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.poll(0.5) == expected:
                return
        got = self.latest
        wrong = {w: (got.get(w), n) for w, n in expected.items() if got.get(w) != n}
        extra = {w: v for w, v in got.items() if w not in expected}
        pytest.fail(
            f"after {timeout} s, {len(wrong)} words missing or wrong (got, expected): "
            f"{dict(list(wrong.items())[:15])}; {len(extra)} unexpected: {dict(list(extra.items())[:15])}"
        )

    def close(self) -> None:
        self.consumer.close()


# ---- the job, launched by hand --------------------------------------------------------------


def wait_until(predicate, timeout: float, what: str, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout} s waiting for {what}")


class SparkJob:
    """`spark-submit wordcount_stream.py ...` in its own process group, as an operator would run it."""

    def __init__(self, stack, tmp_path: Path, in_topic: str, out_topic: str, group: str, *options: str):
        self.stack, self.log_path = stack, tmp_path / f"{group}.log"
        self.checkpoint = f"/checkpoints/it/{group}"
        self.args = [
            str(REPO / ".venv" / "bin" / "spark-submit"),
            "--master", "local[2]",
            "--name", f"it-{group}",
            "--py-files", str(deps.ensure_python_archive()),
            str(JOB), stack.kafka_bootstrap, in_topic, group,
            "--output-topic", out_topic,
            "--checkpoint", self.checkpoint,
            *options,
        ]  # fmt: skip
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        log = open(self.log_path, "a")  # noqa: SIM115 - owned by the process
        log.write(f"\n===== start {self.starts}\n")
        log.flush()
        # spark-submit execs the JVM (SparkSubmit, the driver), which starts the python driver.
        self.proc = subprocess.Popen(
            self.args, env=self.stack.env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()

    def python_driver_pids(self) -> list[int]:
        return [p for p in processes.in_group(self.proc.pid) if p != self.proc.pid]

    def kill9(self) -> None:
        """kill -9 the driver JVM; its python driver must not outlive it."""
        assert self.proc and self.proc.poll() is None, f"job not running:\n{self.log_tail()}"
        drivers = wait_until(self.python_driver_pids, 60, "the python driver")
        os.kill(self.proc.pid, signal.SIGKILL)
        assert self.proc.wait(30) == -signal.SIGKILL
        wait_until(lambda: not any(processes.alive(p) for p in drivers), 30, "the python driver to exit")

    def assert_running(self) -> None:
        assert self.proc and self.proc.poll() is None, f"the job died:\n{self.log_tail()}"

    def log_tail(self, n: int = 60) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            with _suppress():
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)


class _suppress:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return exc[0] is not None and issubclass(exc[0], ProcessLookupError)


@pytest.fixture
def names():
    tag = uuid.uuid4().hex[:8]
    return {"in": f"it-wc-in-{tag}", "out": f"it-wc-out-{tag}", "group": f"it-wc-{tag}"}


@pytest.fixture
def job_and_output(stack, tmp_path, names):
    create_topics(stack, names["in"], names["out"], compacted=(names["out"],))
    job = SparkJob(stack, tmp_path, names["in"], names["out"], names["group"])
    output = LatestValues(stack, names["out"])
    try:
        yield job, output
    finally:
        job.stop()
        output.close()
        cleanup(stack, [names["in"], names["out"]], [job.checkpoint])


# ---- tests: the job by hand -------------------------------------------------------------------


@pytest.mark.timeout(480)
def test_counts_converge_to_an_independent_count(stack, names, job_and_output):
    job, output = job_and_output
    job.start()
    produce(stack, names["in"], LINES)
    output.wait_for(expected_counts(LINES), timeout=180)  # includes the JVM start
    job.assert_running()

    more = [line.upper() for line in LINES[:4]] + ["Hello Kafka, hello Spark!"]
    produce(stack, names["in"], more)
    output.wait_for(expected_counts(LINES + more), timeout=60)


@pytest.mark.timeout(600)
def test_kill_9_mid_stream_then_restart_stays_exact(stack, names, job_and_output, tmp_path):
    """With the console table on, as the DAG runs it (the Kafka write then goes through foreachBatch)."""
    job, output = job_and_output
    out_file = tmp_path / "out"
    job.args += ["--console-file", str(out_file)]
    stream = [f"{line} #{i}" for i in range(150) for line in LINES]  # 1,500 lines over ~15 s
    job.start()
    produce(stack, names["in"], LINES)
    output.wait_for(expected_counts(LINES), timeout=180)

    producer = threading.Thread(target=produce, args=(stack, names["in"], stream, 0.01))
    producer.start()
    # Let a few micro-batches of the stream go through, then crash the driver in the middle.
    wait_until(lambda: len(output.poll(0.5)) > len(expected_counts(LINES)) + 20, 60, "stream counts")
    assert producer.is_alive(), "the stream ended before the kill: make it longer"
    job.kill9()
    time.sleep(2)
    job.start()  # same checkpoint: resumes after the last committed micro-batch
    # ... and crash it once more while it replays / catches up.
    wait_until(lambda: len(output.poll(0.5)) > len(expected_counts(LINES)) + 100, 120, "restarted job")
    job.kill9()
    job.start()
    producer.join()

    output.wait_for(expected_counts(LINES + stream), timeout=180)
    job.assert_running()
    table = out_file.read_text(encoding="utf-8")
    assert "Batch: 0" in table and "|word|count|" in table.replace(" ", "")
    assert "|the|" in table.replace(" ", "")


@pytest.mark.timeout(480)
def test_bad_input_never_stops_the_job(stack, names, job_and_output):
    job, output = job_and_output
    one_mib_line = "lorem ipsum dolor, sit amet; " * (MIB // 29 + 1)  # > 1 MiB of words
    bad: list[bytes | str | None] = [
        None,  # null value (a tombstone)
        b"",  # empty line
        "\n",
        b"caf\xc3 au\xfflait \xe2\x82ok",  # invalid UTF-8: replaced by U+FFFD, which separates words
        b"\xff\xfe\xfd",
        one_mib_line,
        b"Z" * (MAX_WORD_BYTES + 1),  # a "word" too long to be a Kafka key: not counted
        "x" * MAX_WORD_BYTES,  # the longest word that is counted
    ]
    good = ["Still counting: après la pluie, le beau temps.", "Still counting after bad input!"]
    job.start()
    produce(stack, names["in"], ["warm up"])
    output.wait_for(expected_counts(["warm up"]), timeout=180)

    produce(stack, names["in"], bad + good)
    output.wait_for(expected_counts(["warm up"] + bad + good), timeout=120)
    job.assert_running()
    assert output.latest["lorem"] == str(MIB // 29 + 1)
    assert output.latest["x" * MAX_WORD_BYTES] == "1"
    assert "z" * (MAX_WORD_BYTES + 1) not in output.latest


# ---- tests: through Airflow ------------------------------------------------------------------


class AirflowApi(AirflowClient):
    """The stack's REST API, for the streaming DAG."""

    def task_try_number(self, run_id: str) -> int:
        return self.get(f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/wordcount_stream")["try_number"]


def airflow_cli(stack, *args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [str(REPO / "bin" / "airflow"), *args], env=stack.env(), capture_output=True, text=True, timeout=180
    )
    assert proc.returncode == 0, f"airflow {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


def spark_submit_tree(group: str) -> tuple[int, list[int]]:
    """(process group, its live processes) of the spark-submit started for `group`."""
    jvms = [p for p in processes.matching(f" {group} ") if "SparkSubmit" in processes.command_line(p)]
    if len(jvms) != 1:
        return 0, []
    pgid = os.getpgid(jvms[0])
    return pgid, processes.in_group(pgid)


@pytest.mark.timeout(900)
def test_airflow_restarts_a_killed_job_exactly_and_mark_failed_kills_the_whole_tree(stack, names, tmp_path):
    """kill -9 the driver: the DAG's retries bring it back, counts stay exact; marking the run
    failed kills the task's whole process group (task runner, spark-submit JVM, python driver)."""
    create_topics(stack, names["in"], names["out"], compacted=(names["out"],))
    api = AirflowApi(stack)
    was_paused = api.dag(DAG_ID)["is_paused"]
    output = LatestValues(stack, names["out"])
    # Free the single run slot: pause (no new continuous run), end the current run.
    stopped = run_stack("stream-stop", dict(os.environ), timeout=300)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert api.dag(DAG_ID)["is_paused"] and not api.active_runs(DAG_ID), stopped.stdout
    conf = {
        "input_topics": names["in"],
        "output_topic": names["out"],
        "group_id": names["group"],
        "console_file": str(tmp_path / "out"),
    }
    run_id = f"it_{names['group']}"
    airflow_cli(stack, "dags", "trigger", DAG_ID, "--run-id", run_id, "--conf", json.dumps(conf))
    try:
        # `make stream-start` gives the single run slot to the run triggered while paused (the
        # continuous schedule may start its own run first: seen in CI).
        started = run_stack("stream-start", dict(os.environ), timeout=300)
        assert started.returncode == 0, started.stdout + started.stderr
        assert f"{run_id} is running" in started.stdout
        assert api.run_state(DAG_ID, run_id) in ("running", "success"), started.stdout
        wait_until(lambda: spark_submit_tree(names["group"])[1], 240, "the DAG's spark-submit")
        produce(stack, names["in"], LINES)
        output.wait_for(expected_counts(LINES), timeout=180)

        # kill -9 the driver JVM mid-stream: the task fails, its retry restarts the job.
        stream = [f"{line} #{i}" for i in range(100) for line in LINES]
        producer = threading.Thread(target=produce, args=(stack, names["in"], stream, 0.01))
        producer.start()
        wait_until(lambda: len(output.poll(0.5)) > len(expected_counts(LINES)) + 20, 60, "stream counts")
        pgid, tree = spark_submit_tree(names["group"])
        jvm = next(p for p in tree if "SparkSubmit" in processes.command_line(p))
        os.kill(jvm, signal.SIGKILL)
        wait_until(lambda: api.task_try_number(run_id) >= 2, 120, "the task's retry")
        wait_until(
            lambda: spark_submit_tree(names["group"])[0] not in (0, pgid), 240, "the restarted spark-submit"
        )
        producer.join()
        output.wait_for(expected_counts(LINES + stream), timeout=240)
        assert "Batch: 0" in (tmp_path / "out").read_text(encoding="utf-8")  # the lab's table

        # Stop: mark the run failed. Everything in the task's process group must go.
        pgid, tree = spark_submit_tree(names["group"])
        assert len(tree) >= 3, f"expected task runner, JVM and python driver in group {pgid}: {tree}"
        assert run_id in api.stop_dag(DAG_ID)
        wait_until(lambda: not processes.in_group(pgid), 60, f"process group {pgid} to be gone")
        assert not processes.matching(f" {names['group']} "), "a process of the job outlived its task"
        assert api.run_state(DAG_ID, run_id) == "failed"
    finally:
        output.close()
        for pid in processes.matching(f" {names['group']} "):
            with _suppress():
                os.kill(pid, signal.SIGKILL)
        api.set_paused(DAG_ID, was_paused)
        cleanup(stack, [names["in"], names["out"]], [f"/checkpoints/wordcount_stream/{names['group']}"])
