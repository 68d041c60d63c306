"""Landing throughput against Kafka's own ConsumerPerformance, and the fixed cost of a no-op run.

    .venv/bin/python bench/landing_bench.py [--records 5000000] [--partitions 2] [--airflow [N]]

Against the running stack (`make up`); everything it creates (a topic, HDFS folders under
/bench/<id>/) is deleted at the end unless --keep. In one run, on the same topic:

1. produce --records records of about --record-bytes bytes (distinct UTF-8 text values);
2. --repeat rounds (default 3) of:
   ConsumerPerformance (`org.apache.kafka.tools.ConsumerPerformance`, one consumer, the physical
   read limit here) reading 1 record, then all of them: rate = records / (wall(all) - wall(1));
   then the landing job (spark-submit, the same command as the DAG) on a 1-record topic, then on
   the big topic, into a fresh root each round (so everything is landed again):
   rate = records / (wall(big) - wall(1 record)), the fixed start-up cost cancelled out;
   reported: each round, the medians and the ratio of the medians;
3. a no-op landing (nothing new): wall time of spark-submit, and with --airflow N, N runs of the
   same through the DAG: from the start of task `land` to the end of task `report`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from streamlab import deps, lake  # noqa: E402
from streamlab import landing as landing_protocol  # noqa: E402
from streamlab.config import StackConfig  # noqa: E402

JOB = REPO / "spark_jobs" / "kafka_to_hdfs_landing.py"
REPORT_MARKER = "LANDING_REPORT_JSON "
WORDS = "kafka hdfs spark airflow parquet données landing exactly once offset partition topic".split()


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


def consumer_perf(cfg: StackConfig, topic: str, n: int) -> tuple[float, dict[str, str]]:
    cmd = [
        str(REPO / "bin" / "kafka-consumer-perf-test.sh"),
        "--bootstrap-server", cfg.kafka_bootstrap, "--topic", topic, "--messages", str(n),
        "--timeout", "120000", "--group", f"bench-{uuid.uuid4().hex[:8]}",
    ]  # fmt: skip
    start = time.monotonic()
    proc = subprocess.run(cmd, cwd=REPO, env=cfg.env(), capture_output=True, text=True, timeout=900)
    wall = time.monotonic() - start
    if proc.returncode != 0:
        sys.exit(f"ConsumerPerformance failed:\n{proc.stdout}\n{proc.stderr}")
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    header = next(i for i, line in enumerate(lines) if line.startswith("start.time"))
    stats = dict(
        zip(
            [h.strip() for h in lines[header].split(",")],
            [v.strip() for v in lines[header + 1].split(",")],
            strict=True,
        )
    )
    return wall, stats


def landing(
    cfg: StackConfig,
    topic: str,
    root: str | None,
    run_id: str,
    extra: list[str],
    job: Path = JOB,
    archive: Path | None = None,
) -> tuple[float, dict]:
    """Run the landing job; `root` None = the DAG's folders (streamlab.lake: /data/raw, ...).

    `job` and `archive` (the streamlab package for --py-files) default to this checkout's."""
    roots = [] if root is None else [
        "--raw-root", f"{root}/raw", "--quarantine-root", f"{root}/quarantine", "--reports-root", f"{root}/reports",
    ]  # fmt: skip
    cmd = [
        str(REPO / "bin" / "spark-submit"), "--name", "kafka_to_hdfs_landing",
        "--py-files", str(archive or deps.ensure_python_archive()), str(job), "--bootstrap-servers", cfg.kafka_bootstrap, "--topic", f"{topic}=text",
        "--run-id", run_id, *roots, *extra,
    ]  # fmt: skip
    start = time.monotonic()
    proc = subprocess.run(cmd, cwd=REPO, env=cfg.env(), capture_output=True, text=True, timeout=3600)
    wall = time.monotonic() - start
    report = next(
        (
            json.loads(x[len(REPORT_MARKER) :])
            for x in proc.stdout.splitlines()
            if x.startswith(REPORT_MARKER)
        ),
        None,
    )
    if proc.returncode != 0 or report is None:
        sys.exit(f"landing failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return wall, report


def airflow_noop(cfg: StackConfig, topic: str) -> dict:
    """Trigger the DAG for an already landed topic; seconds from `land` start to `report` end."""
    from datetime import datetime

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
    while time.time() < deadline:
        state = requests.get(f"{api}/dagRuns/{run_id}", headers=headers, timeout=30).json()["state"]
        if state in ("success", "failed"):
            break
        time.sleep(2)
    tis = {
        t["task_id"]: t
        for t in requests.get(f"{api}/dagRuns/{run_id}/taskInstances", headers=headers, timeout=30).json()[
            "task_instances"
        ]
    }

    def ts(s: str) -> float:
        return datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()

    return {
        "run_id": run_id,
        "state": state,
        "land_task_s": round(ts(tis["land"]["end_date"]) - ts(tis["land"]["start_date"]), 2),
        "land_start_to_report_end_s": round(ts(tis["report"]["end_date"]) - ts(tis["land"]["start_date"]), 2),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=5_000_000)
    ap.add_argument("--record-bytes", type=int, default=100)
    ap.add_argument("--partitions", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3, help="rounds of ConsumerPerformance + landing")
    ap.add_argument(
        "--airflow", type=int, nargs="?", const=1, default=0, metavar="N",
        help="also time N (default 1) no-op runs through the DAG",
    )  # fmt: skip
    ap.add_argument("--keep", action="store_true", help="keep the topics and HDFS folders")
    ap.add_argument("--landing-arg", action="append", default=[], help="extra argument for the landing job")
    args = ap.parse_args()

    cfg = StackConfig.load()
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": cfg.kafka_bootstrap})
    bench_id = uuid.uuid4().hex[:8]
    big, tiny = f"bench-landing-{bench_id}", f"bench-landing-{bench_id}-tiny"
    for name, parts in ((big, args.partitions), (tiny, 1)):
        admin.create_topics([NewTopic(name, parts, 1)])[name].result()
    root = f"/bench/{bench_id}"
    out: dict = {"records": args.records, "record_bytes": args.record_bytes, "partitions": args.partitions}
    try:
        print(f"producing {args.records:,} records of {args.record_bytes} B into {big} ...", flush=True)
        out["produce_s"] = round(produce(cfg, big, args.records, args.record_bytes, args.partitions), 1)
        produce(cfg, tiny, 1, args.record_bytes, 1)

        # Alternating rounds, medians reported: one pair of runs moves by +-30 % on a shared
        # 2-core machine (the broker, the DataNode and Airflow run beside it).
        rounds = []
        for k in range(args.repeat):
            print(
                f"round {k + 1}/{args.repeat}: ConsumerPerformance, then landing 1 record and all", flush=True
            )
            cp1, _ = consumer_perf(cfg, big, 1)
            cpn, stats = consumer_perf(cfg, big, args.records)
            w1, _ = landing(cfg, tiny, f"{root}/{k}", f"bench-{bench_id}-{k}-tiny", args.landing_arg)
            wn, rn = landing(cfg, big, f"{root}/{k}", f"bench-{bench_id}-{k}-big", args.landing_arg)
            t = rn["topics"][0]
            assert t["totals"]["records"] == args.records, t["totals"]
            cp_rate, land_rate = args.records / (cpn - cp1), args.records / (wn - w1)
            rounds.append(
                {
                    "consumer_perf_wall_1_s": round(cp1, 2),
                    "consumer_perf_wall_all_s": round(cpn, 2),
                    "consumer_perf_records_per_s": round(cp_rate),
                    "tool_fetch_nmsg_per_s": float(stats.get("fetch.nMsg.sec", "nan")),
                    "landing_wall_1_record_s": round(w1, 2),
                    "landing_wall_all_s": round(wn, 2),
                    "landing_records_per_s": round(land_rate),
                    "ratio": round(land_rate / cp_rate, 3),
                    "timings_s": t["timings_s"],
                    "spark_startup_s": rn.get("spark_startup_s"),
                    "files": t["totals"]["files"],
                    "parquet_bytes": t["totals"]["bytes"],
                }
            )
            print(f"  {json.dumps(rounds[-1])}", flush=True)
        w0, r0 = landing(cfg, big, f"{root}/0", f"bench-{bench_id}-noop", args.landing_arg)
        out["rounds"] = rounds
        out["consumer_perf_records_per_s_median"] = round(
            statistics.median(r["consumer_perf_records_per_s"] for r in rounds)
        )
        out["landing_records_per_s_median"] = round(
            statistics.median(r["landing_records_per_s"] for r in rounds)
        )
        out["ratio_of_medians"] = round(
            out["landing_records_per_s_median"] / out["consumer_perf_records_per_s_median"], 3
        )
        out["ratios"] = [r["ratio"] for r in rounds]
        out["noop"] = {"wall_s": round(w0, 2), "in_job_s": r0["topics"][0]["seconds"]}
        if args.airflow:
            landing(
                cfg, tiny, None, f"bench-{bench_id}-tiny-dag-folders", args.landing_arg
            )  # as the DAG lands
            runs = []
            for k in range(args.airflow):
                print(f"no-op run through Airflow {k + 1}/{args.airflow} ...", flush=True)
                runs.append(airflow_noop(cfg, tiny))
                print(f"  {json.dumps(runs[-1])}", flush=True)
            out["airflow_noop"] = {
                "runs": runs,
                "land_start_to_report_end_s_median": statistics.median(
                    r["land_start_to_report_end_s"] for r in runs
                ),
            }
    finally:
        if not args.keep:
            admin.delete_topics([big, tiny], operation_timeout=60)
            import hdfs

            client = hdfs.InsecureClient(cfg.webhdfs_url, user="streamlab")
            for folder in (root, lake.TopicPaths(tiny).root):  # each commit leaves a snapshot
                landing_protocol.release_snapshots(client, folder)
            doomed = [
                root,
                lake.TopicPaths(tiny).root,
                lake.TopicPaths(tiny).quarantine,
                f"{lake.REPORTS_ROOT}/bench-*{bench_id}*",
            ]
            subprocess.run([str(REPO / "bin" / "hdfs"), "dfs", "-rm", "-r", "-f", "-skipTrash", *doomed],
                           cwd=REPO, env=cfg.env(), capture_output=True)  # fmt: skip
    load = os.getloadavg()
    out["load_average"] = [round(x, 2) for x in load]
    print(json.dumps(out, indent=2))
    print(
        f"\nConsumerPerformance: {out['consumer_perf_records_per_s_median']:,} records/s (median of {args.repeat})\n"
        f"Landing:             {out['landing_records_per_s_median']:,} records/s excluding start-up (median)\n"
        f"Ratio of medians:    {out['ratio_of_medians']} (rounds: {out['ratios']})\n"
        f"No-op landing:       {out['noop']['wall_s']} s spark-submit wall"
        + (
            f", {out['airflow_noop']['land_start_to_report_end_s_median']} s Airflow land start -> report"
            f" end (median of {args.airflow}: {[r['land_start_to_report_end_s'] for r in out['airflow_noop']['runs']]})"
            if args.airflow
            else ""
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
