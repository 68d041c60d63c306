"""The landing job at scale: its throughput against Kafka's ConsumerPerformance, and its fixed cost.

    .venv/bin/python bench/landing_bench.py [--records 5000000] [--repeat 5]
        [--matrix 1x1,1x4,5x1,5x4,20x1,20x4] [--scale-records 2000000] [--scale-repeat 3]
        [--airflow 5] [--out DIR] [--keep]
    .venv/bin/python bench/landing_bench.py --quick     # the whole pipeline in about a minute

Against the running local stack (`make up`). Everything it creates (topics, consumer groups,
HDFS folders under /bench/<id>/, the DAG folders of its Airflow topic) is deleted at the end
unless --keep. Rates come from the job's own clock: a topic's data time runs from the first
record a Spark task fetched to the topic's commit record (in the run report), so a rate cannot
go negative nor swing with the JVM's start-up (subtracting the wall of a 1-record run could:
that start-up alone varied by 8 s). The fixed cost of a run is the rest of its wall.

1. vs ConsumerPerformance: one topic of --records records of --record-bytes bytes over
   --partitions partitions. --repeat rounds of: ConsumerPerformance (one consumer, the physical
   read limit here) over all records, its own rate (`fetch.nMsg.sec`: without the group join);
   then the landing job (spark-submit, the DAG's command) of all records into a fresh root. Per
   round: both rates and their ratio; summary: min/median/max and the ratio of the medians.
2. scale: per --matrix configuration (topics x partitions), --scale-records records spread
   evenly over all its topic-partitions; --scale-repeat rounds of one spark-submit run landing
   all its topics into a fresh root (records/s, fixed cost, each topic's protocol seconds), then
   a no-op run of the same topics without a JVM (streamlab.landing_run.run_without_spark, what
   the DAG's `land` task tries first). How the fixed cost grows: least-squares lines.
3. --airflow N no-op runs through the DAG: from the start of task `land` to the end of `report`.

Writes <out>/landing.json (settings, host, every round, the summary, `complete`) after every
round and <out>/landing.png (records/s by topics x partitions, fixed cost, ratio per round) after
every part; prints a table. SIGTERM/SIGINT: stops, deletes what it created, keeps what it measured.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.common import say, stop_on_signals  # noqa: E402
from bench.report import (  # noqa: E402
    landing_run_figures,
    landing_title,
    plot_landing,
    ratio,
    summarize_landing,
    write_json,
)
from streamlab import deps, lake  # noqa: E402
from streamlab import landing as landing_protocol  # noqa: E402
from streamlab.config import StackConfig  # noqa: E402

JOB = REPO / "spark_jobs" / "kafka_to_hdfs_landing.py"
REPORT_MARKER = "LANDING_REPORT_JSON "
WORDS = "kafka hdfs spark airflow parquet données landing exactly once offset partition topic".split()


# ---- the systems: producer, ConsumerPerformance, the landing job ------------------------------


def produce(cfg: StackConfig, topic: str, n: int, size: int, partitions: int) -> float:
    from confluent_kafka import Producer

    p = Producer(
        {
            "bootstrap.servers": cfg.kafka_bootstrap,
            "linger.ms": 50,
            "batch.size": 1_000_000,
            "queue.buffering.max.messages": 2_000_000,
            "compression.type": "none",
        }
    )
    filler = " ".join(WORDS * 4)
    start = time.monotonic()
    for i in range(n):
        head = f"{i:09d} {WORDS[i % len(WORDS)]} {WORDS[(i // 7) % len(WORDS)]} "
        value = (head + filler)[:size].encode()
        while True:
            try:
                p.produce(topic, value=value, partition=i % partitions)
                break
            except BufferError:
                p.poll(0.05)
        if i % 50_000 == 0:
            p.poll(0)
    p.flush()
    return time.monotonic() - start


def run_child(cmd: list[str], cfg: StackConfig, timeout: float) -> tuple[float, subprocess.CompletedProcess]:
    """(wall, result) of a command in its own process group: on SIGTERM/SIGINT (or a timeout) the
    bench's unwinding stops the whole group, the JVM that bin/ scripts exec included."""
    start = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=REPO, env=cfg.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)  # fmt: skip
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except BaseException:
        stop_group(proc)
        raise
    return time.monotonic() - start, subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)


def stop_group(proc: subprocess.Popen) -> None:
    for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 30)):
        try:
            os.killpg(proc.pid, sig)
            proc.wait(wait)
            return
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            continue


def consumer_perf(
    cfg: StackConfig, topic: str, n: int, group: str | None = None
) -> tuple[float, dict[str, str]]:
    """ConsumerPerformance reading `n` records of `topic`: (wall, its CSV line by column)."""
    cmd = [
        str(REPO / "bin" / "kafka-consumer-perf-test.sh"),
        "--bootstrap-server", cfg.kafka_bootstrap, "--topic", topic, "--messages", str(n),
        "--timeout", "120000", "--group", group or f"bench-{uuid.uuid4().hex[:8]}",
    ]  # fmt: skip
    wall, proc = run_child(cmd, cfg, timeout=900)
    if proc.returncode != 0:
        sys.exit(f"ConsumerPerformance failed:\n{proc.stdout}\n{proc.stderr}")
    return wall, parse_consumer_perf(proc.stdout)


def parse_consumer_perf(stdout: str) -> dict[str, str]:
    """ConsumerPerformance's result: its header line (`start.time, end.time, ...`) and the line
    after it, by column."""
    lines = [line for line in stdout.splitlines() if line.strip()]
    header = next(i for i, line in enumerate(lines) if line.startswith("start.time"))
    return dict(
        zip(
            [h.strip() for h in lines[header].split(",")],
            [v.strip() for v in lines[header + 1].split(",")],
            strict=True,
        )
    )


def consumer_perf_figures(wall_s: float, stats: dict[str, str]) -> dict:
    """Its own rates: `fetch.nMsg.sec` leaves out the group join (`rebalance.time.ms`),
    `nMsg.sec` does not; the wall adds the JVM's start-up."""

    def number(key: str) -> float | None:
        try:
            value = float(stats[key])
        except (KeyError, ValueError):
            return None
        return value if math.isfinite(value) else None

    records = number("data.consumed.in.nMsg")
    return {
        "wall_s": round(wall_s, 3),
        "records": None if records is None else int(records),
        "fetch_records_per_s": number("fetch.nMsg.sec"),
        "records_per_s": number("nMsg.sec"),
        "rebalance_ms": number("rebalance.time.ms"),
        "fetch_ms": number("fetch.time.ms"),
    }


class LandingFailed(RuntimeError):
    """The landing job exited with an error or printed no report; its wall and report (if any) kept."""

    def __init__(self, message: str, wall_s: float, report: dict | None):
        super().__init__(message)
        self.wall_s, self.report = wall_s, report


def job_args(
    cfg: StackConfig, topics: str | Sequence[str], root: str | None, run_id: str, extra: Sequence[str]
) -> list[str]:
    """The landing job's arguments (after the job file): all `topics` in one run; `root` None =
    the DAG's folders (streamlab.lake: /data/raw, ...)."""
    names = [topics] if isinstance(topics, str) else list(topics)
    roots = [] if root is None else [
        "--raw-root", f"{root}/raw", "--quarantine-root", f"{root}/quarantine", "--reports-root", f"{root}/reports",
    ]  # fmt: skip
    return [
        "--bootstrap-servers", cfg.kafka_bootstrap, "--topic", ",".join(f"{t}=text" for t in names),
        "--run-id", run_id, *roots, *extra,
    ]  # fmt: skip


def landing(
    cfg: StackConfig,
    topic: str | Sequence[str],
    root: str | None,
    run_id: str,
    extra: Sequence[str],
    job: Path = JOB,
    archive: Path | None = None,
) -> tuple[float, dict]:
    """Run the landing job with spark-submit (the DAG's command) on one topic or several (landed
    one after another in one run): (wall, run report). Raises LandingFailed.

    `job` and `archive` (the streamlab package for --py-files) default to this checkout's."""
    cmd = [
        str(REPO / "bin" / "spark-submit"), "--name", "kafka_to_hdfs_landing",
        "--py-files", str(archive or deps.ensure_python_archive()), str(job),
        *job_args(cfg, topic, root, run_id, extra),
    ]  # fmt: skip
    wall, proc = run_child(cmd, cfg, timeout=3600)
    report = next(
        (
            json.loads(x[len(REPORT_MARKER) :])
            for x in proc.stdout.splitlines()
            if x.startswith(REPORT_MARKER)
        ),
        None,
    )
    if proc.returncode != 0 or report is None:
        raise LandingFailed(
            f"landing run {run_id} failed (exit {proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}",
            wall,
            report,
        )
    return wall, report


def noop_without_spark(
    cfg: StackConfig, client, topics: Sequence[str], root: str | None, run_id: str, extra: Sequence[str]
) -> dict:
    """A run of `topics` with nothing new, in this process and without a JVM, as the DAG's `land`
    task runs it first: its wall and what it did."""
    from streamlab import landing_run

    argv = job_args(cfg, topics, root, run_id, extra)
    printed = io.StringIO()  # its report, as the job prints it: not the bench's progress
    start = time.monotonic()
    with contextlib.redirect_stdout(printed):
        report = landing_run.run_without_spark(argv, client)
    wall = time.monotonic() - start
    if report is None:
        return {"wall_s": round(wall, 3), "error": "run_without_spark found records to land"}
    return noop_figures(wall, report)


def noop_figures(wall_s: float, report: dict) -> dict:
    topics = report.get("topics", [])
    figures = {
        "wall_s": round(wall_s, 3),
        "status": report.get("status"),
        "spark": report.get("spark"),
        "topics": len(topics),
        "noop_topics": sum(1 for t in topics if t.get("status") == "noop"),
        "in_topics_s": round(sum(t.get("seconds") or 0 for t in topics), 3),
    }
    if report.get("status") != "ok":
        errors = "; ".join(
            f"{t.get('topic')}: {str(t.get('error'))[:500]}" for t in topics if t.get("status") == "error"
        )
        figures["error"] = f"no-op run {report.get('status')}: {errors}"
    return figures


def airflow_noop(cfg: StackConfig, topic: str) -> dict:
    """Trigger the DAG for an already landed topic; seconds from `land` start to `report` end."""
    import requests

    user, password = cfg.admin_credentials()
    token = requests.post(
        f"{cfg.airflow_url}/auth/token", json={"username": user, "password": password}, timeout=30
    )
    headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
    api = f"{cfg.airflow_url}/api/v2/dags/kafka_to_hdfs_landing"
    run_id = f"bench-noop-{topic}-{uuid.uuid4().hex[:6]}"
    r = requests.post(
        f"{api}/dagRuns", headers=headers, timeout=30,
        json={"dag_run_id": run_id, "logical_date": None, "conf": {"topics": [f"{topic}=text"]}},
    )  # fmt: skip
    r.raise_for_status()
    deadline = time.time() + 900
    state = None
    while time.time() < deadline:
        state = requests.get(f"{api}/dagRuns/{run_id}", headers=headers, timeout=30).json()["state"]
        if state in ("success", "failed"):
            break
        time.sleep(1)
    tis = {
        t["task_id"]: t
        for t in requests.get(f"{api}/dagRuns/{run_id}/taskInstances", headers=headers, timeout=30).json()[
            "task_instances"
        ]
    }
    # Timed from the last try's start: a retried run, or one that landed something or started
    # Spark, is not a measure of a no-op run (the summary counts "success" only).
    if state == "success":
        report = requests.get(
            f"{api}/dagRuns/{run_id}/taskInstances/report/xcomEntries/return_value",
            headers=headers,
            timeout=30,
        ).json()["value"]
        if any(t.get("try_number", 1) > 1 for t in tis.values()):
            state = "success after a retry"
        elif report.get("spark") is not False or any(t["status"] != "noop" for t in report["topics"]):
            state = "success, but not a no-op without Spark"
    return {"run_id": run_id, "state": state, **airflow_task_seconds(tis)}


def airflow_task_seconds(tis: dict[str, dict]) -> dict:
    """Seconds of task `land`, and from its start to the end of task `report` (None if not run)."""

    def ts(task: str, key: str) -> float | None:
        value = (tis.get(task) or {}).get(key)
        return None if not value else datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()

    def between(start: float | None, end: float | None) -> float | None:
        return None if start is None or end is None else round(end - start, 2)

    land_start = ts("land", "start_date")
    return {
        "land_task_s": between(land_start, ts("land", "end_date")),
        "land_start_to_report_end_s": between(land_start, ts("report", "end_date")),
    }


# ---- the parts --------------------------------------------------------------------------------


def parse_matrix(text: str) -> list[tuple[int, int]]:
    """'1x1,5x4' -> [(1, 1), (5, 4)]: topics x partitions."""
    configs = []
    for item in filter(None, (x.strip() for x in text.split(","))):
        match = re.fullmatch(r"([1-9][0-9]*)x([1-9][0-9]*)", item.lower())
        if not match:
            raise ValueError(f"not TOPICSxPARTITIONS: {item!r}")
        configs.append((int(match[1]), int(match[2])))
    return configs


def records_per_topic(total: int, topics: int, partitions: int) -> list[int]:
    """`total` records spread evenly over all topic-partitions (each topic's over its partitions
    by produce()'s round robin): the topic-partitions differ by one record at most."""
    per_partition, extra = divmod(total, topics * partitions)
    counts = []
    for t in range(topics):
        first = t * partitions  # topic-partitions t*P ... t*P+P-1 in order; the first `extra` get +1
        counts.append(per_partition * partitions + max(0, min(partitions, extra - first)))
    return counts


class Bench:
    """One run of the bench: what it created (deleted at the end), what it measured (saved)."""

    def __init__(self, cfg: StackConfig, args: argparse.Namespace):
        from confluent_kafka.admin import AdminClient
        from hdfs import InsecureClient

        self.cfg, self.args = cfg, args
        self.admin = AdminClient({"bootstrap.servers": cfg.kafka_bootstrap})
        self.hdfs = InsecureClient(cfg.webhdfs_url, user="streamlab")
        self.id = uuid.uuid4().hex[:8]
        self.prefix = f"bench-landing-{self.id}"
        self.root = f"/bench/{self.id}"
        self.groups: list[str] = []
        self.dag_topic: str | None = None  # landed into the DAG's folders, for the Airflow runs
        self.results: dict = {
            "bench": "landing",
            "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "host": {"cpus": os.cpu_count(), "load_at_start": load()},
            "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "id": self.id,
            "topics": [],
            "complete": False,
        }
        self.json_path, self.png_path = args.out / "landing.json", args.out / "landing.png"

    # -- saving --

    def save(self, chart: bool = False) -> None:
        """After every round: an interrupted run keeps what it measured."""
        self.results["host"]["load_at_end"] = load()
        self.results["summary"] = summarize_landing(self.results)
        write_json(self.json_path, self.results)
        if chart:
            plot_landing(self.results["summary"], self.png_path, landing_title(self.results))

    # -- Kafka and HDFS --

    def create_topics(self, names: list[str], partitions: int) -> None:
        from confluent_kafka.admin import NewTopic

        self.results["topics"] += names
        for future in self.admin.create_topics([NewTopic(n, partitions, 1) for n in names]).values():
            future.result(60)

    def drop_topics(self, names: list[str]) -> None:
        if not self.args.keep:
            from bench.streaming_bench import delete_topics

            delete_topics(self.admin, names)

    def drop_folder(self, path: str) -> None:
        """An HDFS folder and everything under it; each commit left a snapshot to release first.
        A failure is a warning: the clean-up at the end deletes the bench's whole folder again."""
        if self.args.keep:
            return
        try:
            landing_protocol.release_snapshots(self.hdfs, path)
            self.hdfs.delete(path, recursive=True)
        except Exception as e:
            say(f"warning: {path} not deleted: {e}")

    def land(self, topics: list[str], root: str | None, run_id: str, expected: int) -> dict:
        """One spark-submit run of `topics` into `root`: its figures; `error` if it failed or did
        not land the `expected` records."""
        try:
            wall, report = landing(self.cfg, topics, root, run_id, self.args.landing_arg)
        except LandingFailed as failed:
            say(f"  FAILED: {str(failed)[-1500:]}")
            figures = landing_run_figures(failed.wall_s, failed.report) if failed.report else {}
            # Its first line and the end of its output: where a JVM says what went wrong.
            head, _, rest = str(failed).partition("\n")
            return {**figures, "wall_s": round(failed.wall_s, 3), "error": f"{head}\n...{rest[-1500:]}"}
        figures = landing_run_figures(wall, report)
        if not figures.get("error") and figures["records"] != expected:
            figures["error"] = f"landed {figures['records']:,} records of {expected:,}"
        return figures

    # -- part 1 --

    def versus_consumer_perf(self) -> None:
        args = self.args
        topic = f"{self.prefix}-cp"
        part = self.results["consumer_perf"] = {
            "topic": topic, "records": args.records, "record_bytes": args.record_bytes,
            "partitions": args.partitions, "rounds": [],
        }  # fmt: skip
        self.create_topics([topic], args.partitions)
        say(f"producing {args.records:,} records of {args.record_bytes} B into {topic} ...")
        produce_s = produce(self.cfg, topic, args.records, args.record_bytes, args.partitions)
        part["produce_s"] = round(produce_s, 2)
        # Alternating, medians reported: one pair of runs moves by +-30 % on a shared 2-core
        # machine (the broker, the DataNode and Airflow run beside them).
        for k in range(1, args.repeat + 1):
            say(f"round {k}/{args.repeat}: ConsumerPerformance over {args.records:,} records ...")
            group = f"{self.prefix}-cp-{k}"
            self.groups.append(group)
            cp = consumer_perf_figures(*consumer_perf(self.cfg, topic, args.records, group))
            say(f"  ConsumerPerformance: {num(cp['fetch_records_per_s'])} records/s (fetch.nMsg.sec), "
                f"{num(cp['records_per_s'])} with the group join, wall {cp['wall_s']:.1f} s")  # fmt: skip
            say(f"round {k}/{args.repeat}: landing {args.records:,} records ...")
            root = f"{self.root}/cp/{k}"
            run = self.land([topic], root, f"{self.prefix}-cp-{k}", args.records)
            entry = {"round": k, "consumer_perf": cp, "landing": run, "load": load()}
            if cp["records"] != args.records:  # it stopped at its --timeout: its rate is not one
                entry["error"] = f"ConsumerPerformance read {cp['records']} of {args.records:,} records"
                cp["fetch_records_per_s"] = cp["records_per_s"] = None
            elif run.get("error"):
                entry["error"] = run["error"]
            ratio_ = None if entry.get("error") else ratio(run["records_per_s"], cp["fetch_records_per_s"])
            entry["ratio"] = None if ratio_ is None else round(ratio_, 3)
            part["rounds"].append(entry)
            say(f"  landing: {num(run.get('records_per_s'))} records/s (first record to commit, "
                f"{fmt_s(run.get('data_s'))}), wall {fmt_s(run.get('wall_s'))}, fixed cost {fmt_s(run.get('fixed_s'))} "
                f"(Spark start-up {fmt_s(run.get('spark_startup_s'))}); ratio {entry['ratio']}  (load {load()[0]})"
                + (f"  FAILED: {entry['error'][:200]}" if entry.get("error") else ""))  # fmt: skip
            self.drop_folder(root)
            self.save(chart=k == args.repeat)
        self.drop_topics([topic])

    # -- part 2 --

    def scale(self) -> None:
        args = self.args
        configs = self.results["scale"] = {"configurations": []}
        for i, (n_topics, partitions) in enumerate(args.matrix, 1):
            name = f"{n_topics}x{partitions}"
            topics = [f"{self.prefix}-{name}-{t}" for t in range(1, n_topics + 1)]
            counts = records_per_topic(args.scale_records, n_topics, partitions)
            config = {"name": name, "topics": n_topics, "partitions": partitions,
                      "records": sum(counts), "topic_names": topics, "rounds": []}  # fmt: skip
            configs["configurations"].append(config)
            say(f"configuration {i}/{len(args.matrix)}: {n_topics} topic(s) x {partitions} partition(s), "
                f"producing {sum(counts):,} records ...")  # fmt: skip
            self.create_topics(topics, partitions)
            start = time.monotonic()
            for topic, count in zip(topics, counts, strict=True):
                produce(self.cfg, topic, count, args.record_bytes, partitions)
            config["produce_s"] = round(time.monotonic() - start, 2)
            for k in range(1, args.scale_repeat + 1):
                label = f"{name} round {k}/{args.scale_repeat}"
                say(f"{label}: landing {sum(counts):,} records of {n_topics} topic(s) in one run ...")
                root = f"{self.root}/scale/{name}/{k}"
                run = self.land(topics, root, f"{self.prefix}-{name}-{k}", sum(counts))
                entry = {"round": k, "landing": run, "load": load()}
                if run.get("error"):
                    entry["error"] = run["error"]
                else:
                    say(f"{label}: no-op run of the same topics without a JVM ...")
                    entry["noop"] = noop_without_spark(
                        self.cfg, self.hdfs, topics, root, f"{self.prefix}-{name}-{k}-noop", args.landing_arg
                    )
                    if entry["noop"].get("error"):
                        entry["error"] = entry["noop"]["error"]
                config["rounds"].append(entry)
                noop = entry.get("noop") or {}
                say(f"  {num(run.get('records_per_s'))} records/s, wall {fmt_s(run.get('wall_s'))}, fixed cost "
                    f"{fmt_s(run.get('fixed_s'))} (Spark start-up {fmt_s(run.get('spark_startup_s'))}, protocol "
                    f"{fmt_s(run.get('protocol_s'))}); no-op {fmt_s(noop.get('wall_s'))} (spark {noop.get('spark')})"
                    f"  (load {load()[0]})"
                    + (f"  FAILED: {entry['error'][:200]}" if entry.get("error") else ""))  # fmt: skip
                self.drop_folder(root)
                self.save(chart=k == args.scale_repeat and i == len(args.matrix))
            self.drop_topics(topics)

    # -- part 3 --

    def airflow(self) -> None:
        args = self.args
        topic = self.dag_topic = f"{self.prefix}-dag"
        part = self.results["airflow_noop"] = {"topic": topic, "runs": []}
        self.create_topics([topic], 1)
        produce(self.cfg, topic, 1, args.record_bytes, 1)
        say(f"landing {topic} into the DAG's folders (the DAG lands there) ...")
        first = self.land([topic], None, f"{self.prefix}-dag-first", 1)
        if first.get("error"):
            part["error"] = first["error"]
            return
        for k in range(1, args.airflow + 1):
            say(f"no-op run through Airflow {k}/{args.airflow} ...")
            run = airflow_noop(self.cfg, topic)
            part["runs"].append(run)
            say(f"  {run['state']}: land {fmt_s(run['land_task_s'])}, land start to report end "
                f"{fmt_s(run['land_start_to_report_end_s'])}")  # fmt: skip
            self.save(chart=k == args.airflow)

    # -- clean-up --

    def clean_up(self) -> None:
        if self.args.keep:
            return
        from bench.streaming_bench import delete_groups, delete_topics

        delete_topics(self.admin, self.results["topics"])
        delete_groups(self.admin, self.groups)
        folders = [self.root]
        if self.dag_topic is not None:
            paths = lake.TopicPaths(self.dag_topic)
            folders += [paths.root, paths.quarantine]
        for folder in folders:
            self.drop_folder(folder)
        # The reports of the runs into the DAG's folders (their run ids name the bench).
        if self.dag_topic is not None:
            try:
                for name in self.hdfs.list(lake.REPORTS_ROOT):
                    if self.prefix in name:
                        self.hdfs.delete(f"{lake.REPORTS_ROOT}/{name}")
            except Exception as e:
                say(f"warning: the reports of {self.prefix} in {lake.REPORTS_ROOT} not deleted: {e}")


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def num(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def fmt_s(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"


# ---- main -------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--records", type=int, default=5_000_000, help="part 1: records of the topic")
    p.add_argument("--record-bytes", type=int, default=100)
    p.add_argument("--partitions", type=int, default=2, help="part 1: partitions of the topic")
    p.add_argument("--repeat", type=int, default=5, help="part 1: rounds (0: skip the part)")
    p.add_argument(
        "--matrix", default="1x1,1x4,5x1,5x4,20x1,20x4", help="part 2: TOPICSxPARTITIONS,... ('': skip)"
    )
    p.add_argument("--scale-records", type=int, default=2_000_000, help="part 2: records per configuration")
    p.add_argument("--scale-repeat", type=int, default=3, help="part 2: rounds per configuration")
    p.add_argument(
        "--airflow",
        type=int,
        nargs="?",
        const=5,
        default=5,
        metavar="N",
        help="part 3: no-op runs through Airflow",
    )
    p.add_argument("--out", type=Path, help="folder of landing.json / landing.png (default bench/results)")
    p.add_argument("--keep", action="store_true", help="keep the topics and HDFS folders")
    p.add_argument("--landing-arg", action="append", default=[], help="extra argument for the landing job")
    p.add_argument(
        "--quick", action="store_true",
        help="20,000 records, 1 round, matrix 2x2, no Airflow runs: proves the pipeline",
    )  # fmt: skip
    args = p.parse_args(argv)
    if args.quick:
        args.records, args.repeat = 20_000, 1
        args.matrix, args.scale_records, args.scale_repeat = "2x2", 20_000, 1
        args.airflow = 0
    elif args.out is None:
        args.out = REPO / "bench" / "results"  # --quick: a temp folder, made by main()
    try:
        args.matrix = parse_matrix(args.matrix)
    except ValueError as e:
        p.error(f"--matrix: {e}")
    for name in ("records", "repeat", "scale_records", "scale_repeat", "airflow"):
        if getattr(args, name) < 0:
            p.error(f"--{name.replace('_', '-')} must not be negative (0 skips)")
    if args.partitions < 1 or args.record_bytes < 1:
        p.error("--partitions and --record-bytes must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    stop_on_signals()
    args.out = args.out or Path(tempfile.mkdtemp(prefix="landing-bench-quick-"))
    cfg = StackConfig.load()
    bench = Bench(cfg, args)
    say(f"stack {cfg.home}; bench {bench.id}: topics {bench.prefix}-*, HDFS {bench.root}; results {args.out}")
    try:
        if args.repeat and args.records:
            bench.versus_consumer_perf()
        if args.matrix and args.scale_repeat:
            bench.scale()
        if args.airflow:
            bench.airflow()
        bench.results["complete"] = True
    finally:
        say("deleting the bench's topics and folders ..." if not args.keep else "kept: --keep")
        try:
            bench.clean_up()
        finally:
            bench.save(chart=True)  # `complete` false when interrupted
    print()
    for line in summary_table(bench.results["summary"]):
        print(line)
    say(f"\nwrote {bench.json_path} and {bench.png_path}")
    return 0 if bench.results["summary"]["goals"]["no_failed_round"] else 1


def summary_table(summary: dict) -> list[str]:
    def cell(s: dict | None, unit: str = "", digits: int = 0) -> str:
        if not s:
            return "-"
        return f"{s['median']:,.{digits}f}{unit} ({s['min']:,.{digits}f}-{s['max']:,.{digits}f})"

    rows = []
    cp = summary.get("consumer_perf")
    if cp:
        rows += [
            "| vs ConsumerPerformance, 1 topic (median, min-max) | |",
            "|---|---|",
            f"| ConsumerPerformance, its fetch.nMsg.sec | {cell(cp['consumer_perf_records_per_s'])} records/s |",
            f"| landing job, first record fetched to commit | {cell(cp['landing_records_per_s'])} records/s |",
            f"| ratio of the medians (per round) | {fmt_ratio(cp['ratio_of_medians'])} ({', '.join(fmt_ratio(r) for r in cp['ratios'])}) |",
            f"| landing wall / fixed cost / Spark start-up | {cell(cp['landing_wall_s'], ' s', 1)} / "
            f"{cell(cp['landing_fixed_s'], ' s', 1)} / {cell(cp['landing_spark_startup_s'], ' s', 1)} |",
            f"| failed rounds | {cp['failed_rounds']} of {cp['rounds']} |",
            "",
        ]  # fmt: skip
    scale = summary.get("scale")
    if scale:
        rows += [
            "| topics x partitions | records | records/s | wall | fixed cost (Spark run) | protocol per topic | no-op run, no JVM |",
            "|---|---|---|---|---|---|---|",
        ]  # fmt: skip
        for name, c in scale.items():
            rows.append(
                f"| {name} | {c['records']:,} | {cell(c['records_per_s'])} | {cell(c['wall_s'], ' s', 1)} | "
                f"{cell(c['fixed_s'], ' s', 1)} | {cell(c['protocol_s_per_topic'], ' s', 2)} | {cell(c['noop_s'], ' s', 2)} |"
                + (f" {c['failed_rounds']} failed" if c["failed_rounds"] else "")
            )  # fmt: skip
        rows.append("")
        growth = summary["growth"]
        for key, what in (("fixed_s", "fixed cost of a Spark run"), ("noop_s", "no-op run without a JVM"),
                          ("records_per_s", "records/s")):  # fmt: skip
            for per in ("per_topic", "per_topic_partition"):
                fit = growth[key][per]
                if fit:
                    unit = "" if key == "records_per_s" else " s"
                    digits = 0 if key == "records_per_s" else 3
                    rows.append(
                        f"{what}: {fit['intercept']:,.{digits}f}{unit} {'+' if fit['slope'] >= 0 else '-'} "
                        f"{abs(fit['slope']):,.{digits}f}{unit} {per.replace('_', ' ')} (least squares over "
                        f"{fit['n']} medians, r² {fit['r2']:.2f})"
                    )
        if rows[-1]:
            rows.append("")
    airflow = summary.get("airflow_noop")
    if airflow:
        rows.append(
            f"no-op through Airflow, land start to report end: {cell(airflow['land_start_to_report_end_s'], ' s', 2)}"
            f" over {airflow['runs'] - airflow['failed_runs']} run(s), {airflow['failed_runs']} failed"
        )
    rows.append("goals: " + ", ".join(f"{k} {v}" for k, v in summary["goals"].items()))
    return rows


def fmt_ratio(r: float | None) -> str:
    return "-" if r is None else f"{r:.2f}"


if __name__ == "__main__":
    sys.exit(main())
