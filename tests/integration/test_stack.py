"""The local stack as a new user meets it: real Kafka, HDFS and Airflow, independent clients.

The kill/up and down/up tests restart parts of the session's stack, so they are the last ones of
this module.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from streamlab.airflow_client import REQUEST_TIMEOUT_S, AirflowClient
from tests.conftest import REPO, isolated_env, run_stack

pytestmark = pytest.mark.integration


def stack_env(stack) -> dict[str, str]:
    env = dict(os.environ)
    env["STREAMLAB_HOME"] = str(stack.home)
    return env


def create_topic(bootstrap: str, name: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(name, num_partitions=1, replication_factor=1)])[name].result(30)


def produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    for v in values:
        producer.produce(topic, value=v)
    assert producer.flush(30) == 0


def consume_all(bootstrap: str, topic: str, n: int, timeout: float = 30) -> list[bytes]:
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": f"t-{uuid.uuid4()}", "auto.offset.reset": "earliest"}
    )
    consumer.subscribe([topic])
    got, deadline = [], time.monotonic() + timeout
    while len(got) < n and time.monotonic() < deadline:
        msg = consumer.poll(1)
        if msg is not None and not msg.error():
            got.append(msg.value())
    consumer.close()
    return got


def webhdfs(stack, method: str, path: str, op: str, data: bytes | None = None, **params) -> bytes:
    """Plain WebHDFS over urllib, following the NameNode's redirect to the DataNode."""
    query = "&".join([f"op={op}", "user.name=tester", *(f"{k}={v}" for k, v in params.items())])
    url = f"{stack.webhdfs_url}/webhdfs/v1{path}?{query}"
    for _ in range(3):
        req = urllib.request.Request(url, data=data, method=method)
        opener = urllib.request.build_opener(NoRedirect)
        try:
            with opener.open(req, timeout=30) as resp:
                return resp.read()
        except urllib.error.HTTPError as exc:
            if exc.code in (307, 302):
                url = exc.headers["Location"]
                continue
            raise
    raise AssertionError("too many redirects")


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def test_kafka_independent_client_creates_produces_consumes(stack):
    topic = f"it-{uuid.uuid4().hex[:8]}"
    create_topic(stack.kafka_bootstrap, topic)
    values = [f"line {i} é".encode() for i in range(20)]
    produce(stack.kafka_bootstrap, topic, values)
    assert consume_all(stack.kafka_bootstrap, topic, len(values)) == values


def test_up_provisioned_the_topics_file(stack):
    """`up` triggers kafka_topics_provision: the topics of dags/topics.yaml exist as declared."""
    from streamlab.topics import load_topics

    declared = load_topics(REPO / "dags" / "topics.yaml", env={})
    assert declared
    md = AdminClient({"bootstrap.servers": stack.kafka_bootstrap}).list_topics(timeout=30)
    for topic in declared:
        assert topic.name in md.topics, f"{topic.name} was not provisioned"
        assert len(md.topics[topic.name].partitions) == topic.partitions


def metadata_db(stack):
    """A plain PostgreSQL client on Airflow's metadata database, as any SQL tool would connect."""
    import psycopg2

    return psycopg2.connect(
        host="127.0.0.1", port=stack.ports["postgres"], user="airflow", dbname="airflow",
        password=stack.secrets()["postgres_password"], connect_timeout=10,
    )  # fmt: skip


def dag_runs(stack, dag_id: str) -> list[tuple[str, str]]:
    with metadata_db(stack) as conn, conn.cursor() as cur:
        cur.execute("select run_id, state from dag_run where dag_id = %s order by run_id", (dag_id,))
        return cur.fetchall()


def test_airflow_metadata_db_is_the_stacks_postgresql(stack):
    got = subprocess.run(
        [str(REPO / "bin" / "airflow"), "config", "get-value", "database", "sql_alchemy_conn"],
        env=stack_env(stack), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert got.returncode == 0, got.stderr
    assert got.stdout.strip().startswith("postgresql+psycopg2://airflow:")
    assert f"@127.0.0.1:{stack.ports['postgres']}/airflow" in got.stdout
    # `up` ran the provisioning DAG: its run is in PostgreSQL, read by a client of our own.
    assert "success" in {state for _, state in dag_runs(stack, "kafka_topics_provision")}
    # Loopback only, and no Unix socket.
    with metadata_db(stack) as conn, conn.cursor() as cur:
        cur.execute("select current_setting('listen_addresses'), current_setting('unix_socket_directories')")
        assert cur.fetchone() == ("127.0.0.1", "")


def test_concurrent_rest_writes_are_all_answered(stack):
    """On SQLite, 24 concurrent REST writes hung the api-server for good (an event loop waiting
    for the write lock held by a request that needed that loop). Each write here must succeed,
    while the triggered runs' tasks and the streaming job write too."""
    from concurrent.futures import ThreadPoolExecutor

    client = AirflowClient(stack)
    paused = {d: client.dag(d)["is_paused"] for d in ("kafka_to_hdfs_landing", "hdfs_batch_reprocessing")}
    writes = [lambda: client.trigger("kafka_topics_provision")["dag_run_id"]] * 6
    for dag_id, state in paused.items():  # writes that leave each DAG as it was
        writes += [lambda d=dag_id, s=state: client.set_paused(d, s)] * 9
    with ThreadPoolExecutor(12) as pool:
        results = list(pool.map(lambda w: w(), writes))
    run_ids = results[:6]
    assert len(set(run_ids)) == 6
    assert {d: client.dag(d)["is_paused"] for d in paused} == paused
    # The runs it queued finish before other tests use the provisioning DAG.
    deadline = time.monotonic() + 600
    states = {}
    while time.monotonic() < deadline:
        states = {r: client.run_state("kafka_topics_provision", r) for r in run_ids}
        if all(s in ("success", "failed") for s in states.values()):
            break
        time.sleep(3)
    assert set(states.values()) == {"success"}, states


def test_webhdfs_create_list_read(stack):
    folder = f"/it/{uuid.uuid4().hex[:8]}"
    webhdfs(stack, "PUT", folder, "MKDIRS")
    payload = b"bonjour HDFS\n" * 100
    webhdfs(stack, "PUT", f"{folder}/a.txt", "CREATE", data=payload, overwrite="true")
    listing = json.loads(webhdfs(stack, "GET", folder, "LISTSTATUS"))
    names = [s["pathSuffix"] for s in listing["FileStatuses"]["FileStatus"]]
    assert names == ["a.txt"]
    assert webhdfs(stack, "GET", f"{folder}/a.txt", "OPEN") == payload


def test_airflow_rest_api_accepts_the_printed_admin_credentials(stack):
    with pytest.raises(urllib.error.HTTPError) as denied:
        urllib.request.urlopen(f"{stack.airflow_url}/api/v2/dags", timeout=REQUEST_TIMEOUT_S)
    assert denied.value.code == 401
    req = urllib.request.Request(
        f"{stack.airflow_url}/api/v2/dags", headers={"Authorization": f"Bearer {AirflowClient(stack).token}"}
    )
    with urllib.request.urlopen(req, timeout=REQUEST_TIMEOUT_S) as resp:
        body = json.loads(resp.read())
    assert resp.status == 200 and "dags" in body
    health = json.loads(urllib.request.urlopen(f"{stack.airflow_url}/api/v2/monitor/health").read())
    for component in ("metadatabase", "scheduler", "dag_processor", "triggerer"):
        assert health[component]["status"] == "healthy", health


def test_airflow_connections_come_from_the_environment(stack):
    out = subprocess.run(
        [str(REPO / "bin" / "airflow"), "connections", "get", "kafka_default", "-o", "json"],
        env=stack_env(stack), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    conn = json.loads(out.stdout)[0]
    assert conn["extra_dejson"]["bootstrap.servers"] == stack.kafka_bootstrap


def test_lab_wrappers(stack):
    env = stack_env(stack)
    topic = f"Hello-Kafka-{uuid.uuid4().hex[:6]}"
    create = subprocess.run(
        [str(REPO / "bin" / "kafka-topics.sh"), "--create", "--topic", topic, "--partitions", "1",
         "--replication-factor", "1", "--bootstrap-server", f"localhost:{stack.ports['kafka']}"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert create.returncode == 0, create.stderr
    assert f"Created topic {topic}." in create.stdout
    produce_cmd = subprocess.run(
        [str(REPO / "bin" / "kafka-console-producer.sh"), "--topic", topic,
         "--bootstrap-server", stack.kafka_bootstrap],
        input="Hello kafka\nBonjour\n", env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert produce_cmd.returncode == 0, produce_cmd.stderr
    consume_cmd = subprocess.run(
        [str(REPO / "bin" / "kafka-console-consumer.sh"), "--topic", topic, "--from-beginning",
         "--max-messages", "2", "--bootstrap-server", stack.kafka_bootstrap],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert consume_cmd.stdout.splitlines() == ["Hello kafka", "Bonjour"]
    ls = subprocess.run(
        [str(REPO / "bin" / "hdfs"), "dfs", "-mkdir", "-p", f"/it/{topic}"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert ls.returncode == 0, ls.stderr
    ls = subprocess.run(
        [str(REPO / "bin" / "hdfs"), "dfs", "-ls", "/it"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert f"/it/{topic}" in ls.stdout


def test_spark_submit_wrapper_writes_to_hdfs(stack, tmp_path):
    job = tmp_path / "job.py"
    job.write_text(
        "from pyspark.sql import SparkSession\n"
        "spark = SparkSession.builder.appName('it').getOrCreate()\n"
        "spark.range(10).write.mode('overwrite').parquet('/it/spark-range')\n"
        "print('ROWS', spark.read.parquet('/it/spark-range').count())\n"
    )
    out = subprocess.run(
        [str(REPO / "bin" / "spark-submit"), "--master", "local[1]", str(job)],
        env=stack_env(stack), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    assert "ROWS 10" in out.stdout
    listing = json.loads(webhdfs(stack, "GET", "/it/spark-range", "LISTSTATUS"))
    assert any(s["pathSuffix"].endswith(".parquet") for s in listing["FileStatuses"]["FileStatus"])


def test_second_up_is_a_quick_no_op(stack):
    from streamlab.stack.processes import running_pid
    from streamlab.stack.registry import services

    before = {s.name: running_pid(stack, s.name) for s in services(stack)}
    proc = run_stack("up", stack_env(stack), timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "already up" in proc.stdout
    assert {s.name: running_pid(stack, s.name) for s in services(stack)} == before


@pytest.mark.parametrize(("service", "label"), [("kafka", "Kafka broker"), ("postgres", "PostgreSQL")])
def test_port_taken_is_named_with_its_owner(tmp_path, service, label):
    env = isolated_env(tmp_path / "home")
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        env[f"STREAMLAB_PORT_{service.upper()}"] = str(port)
        proc = run_stack("up", env, timeout=120)
    assert proc.returncode == 1
    assert f"port {port} ({label}" in proc.stderr
    assert f"pid {os.getpid()}" in proc.stderr  # this test process holds it
    assert f"STREAMLAB_PORT_{service.upper()}" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_missing_java_is_a_clear_error(tmp_path):
    env = isolated_env(tmp_path / "home")
    env["JAVA_HOME"] = str(tmp_path / "no-such-jdk")
    proc = run_stack("up", env, timeout=120)
    assert proc.returncode == 1
    assert "Java was not found" in proc.stderr and "JAVA_HOME" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_unhealthy_in_time_names_the_service_then_next_up_recovers(tmp_path):
    env = isolated_env(tmp_path / "home")
    env["STREAMLAB_UP_TIMEOUT"] = "3"  # nothing can be healthy that fast: the error path
    try:
        failed = run_stack("up", env, timeout=300)
        assert failed.returncode == 1
        assert "did not become healthy in time" in failed.stderr
        assert "Last lines of" in failed.stderr
        assert "Traceback" not in failed.stderr
        # The half-started stack is picked up where it was left.
        env["STREAMLAB_UP_TIMEOUT"] = "240"
        recovered = run_stack("up", env, timeout=400)
        assert recovered.returncode == 0, recovered.stdout + recovered.stderr
        status = run_stack("status", env, timeout=60)
        assert status.returncode == 0, status.stdout
    finally:
        run_stack("down", env, timeout=300)
    assert_no_process_of(tmp_path / "home")


def test_interrupted_first_up_recovers(tmp_path):
    """Ctrl-C during formatting/start-up, then `up` again: healthy, storage usable."""
    import sys

    env = isolated_env(tmp_path / "home")
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlab.stack", "up"], cwd=REPO, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        time.sleep(4)
        proc.send_signal(signal.SIGINT)
        proc.wait(60)
        again = run_stack("up", env, timeout=400)
        assert again.returncode == 0, again.stdout + again.stderr
    finally:
        proc.kill()
        run_stack("down", env, timeout=300)
    assert_no_process_of(tmp_path / "home")


def assert_no_process_of(home: Path) -> None:
    """No process whose command line or environment refers to this stack's folder."""
    from streamlab.stack.processes import matching, stack_pids

    left = stack_pids(str(home.resolve())) + matching(str(home.resolve()))
    assert not left, f"processes of the stack still running: {left}"


def test_zz_postgres_killed_then_up_recovers_with_airflow_history(stack):
    """SIGKILL to PostgreSQL's postmaster (a crash, no shutdown checkpoint): the next `up` starts
    it again, PostgreSQL replays its WAL, and no committed DAG run is lost."""
    if os.environ.get("STREAMLAB_TEST_STACK") == "reuse":
        pytest.skip("killing a reused developer stack's database is not this test's business")
    from streamlab.stack.processes import running_pid

    before = dag_runs(stack, "kafka_topics_provision")
    assert before
    pid = running_pid(stack, "postgres")
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while running_pid(stack, "postgres") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert running_pid(stack, "postgres") is None
    if os.geteuid() == 0:
        # The server runs as streamlab-pg; a folder above its data lost o+x since initdb (as
        # pytest does to its temp root at each new session): `up` must give it back.
        stack.home.parent.chmod(0o700)
    status = run_stack("status", stack_env(stack), timeout=120)
    assert status.returncode == 1 and re.search(r"^\s+postgres\s+DOWN", status.stdout, re.M), status.stdout

    up = run_stack("up", stack_env(stack), timeout=400)
    assert up.returncode == 0, up.stdout + up.stderr
    assert "started postgres" in up.stdout
    assert dag_runs(stack, "kafka_topics_provision")[: len(before)] == before
    assert "database system was interrupted" in (stack.log_dir / "postgres.log").read_text()
    status = run_stack("status", stack_env(stack), timeout=120)
    assert status.returncode == 0, status.stdout


def test_zzz_down_stops_everything_and_data_survives_up(stack):
    if os.environ.get("STREAMLAB_TEST_STACK") == "reuse":
        pytest.skip("restarting a reused developer stack is not this test's business")
    runs_before = dag_runs(stack, "kafka_topics_provision")
    topic = f"persist-{uuid.uuid4().hex[:8]}"
    create_topic(stack.kafka_bootstrap, topic)
    produce(stack.kafka_bootstrap, topic, [b"kept across restarts"])
    webhdfs(stack, "PUT", "/it/persist.txt", "CREATE", data=b"still here", overwrite="true")

    down = run_stack("down", stack_env(stack), timeout=300)
    assert down.returncode == 0, down.stderr
    assert_no_process_of(stack.home)
    for port in stack.ports.values():
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", port)) != 0, f"port {port} still answers after down"

    up = run_stack("up", stack_env(stack), timeout=400)
    assert up.returncode == 0, up.stdout + up.stderr
    assert consume_all(stack.kafka_bootstrap, topic, 1) == [b"kept across restarts"]
    assert webhdfs(stack, "GET", "/it/persist.txt", "OPEN") == b"still here"
    # Airflow's history too (the up after it adds one more provisioning run).
    assert dag_runs(stack, "kafka_topics_provision")[: len(runs_before)] == runs_before
