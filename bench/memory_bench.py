"""Memory of the running stack after a workload, per service (issue 12: at most 3 GiB RSS).

    .venv/bin/python bench/memory_bench.py [--rates 1000,10000,50000] [--seconds 60]
        [--landings 2] [--batch/--no-batch] [--settle 30] [--out DIR]
    .venv/bin/python bench/memory_bench.py --quick     # the whole pipeline in under a minute

Against the running local stack (`make up`; or STREAMLAB_HOME=... for another one), its streaming
word count running. The workload is the benches' load, through the platform's own paths:
1. text into the streaming job's input topic `Hello-Kafka` at each --rates lines/s for --seconds
   (the streaming bench's lines, ~10 words each; its ladder sustains 50,000 lines/s), a marker
   word on some lines; after each rate, wait until the job's count of the last marker is readable
   in `wordcounts` (the job caught up). The words stay in the stack's counts: it is a workload.
2. --landings runs of DAG `kafka_to_hdfs_landing` triggered through Airflow's REST API, one after
   the other (each lands what the text added), then one run of `hdfs_batch_reprocessing` for
   yesterday (--no-batch: none).
3. Every --interval s all along, the memory of every process of the stack, by service (a service's
   process and all its descendants; the scheduler's are split into the executor's workers, the
   task processes, the streaming job and the other Spark jobs): RSS summed (counts a page shared
   by several processes once per process: it overstates) and PSS summed (shares such pages out).
   The figure that counts is after the workload: --settle s after the last run ended.

Writes <out>/memory.json (every sample's totals, the peak and the settled figures per part) and
<out>/memory.png (per part: RSS and PSS after the workload, RSS at the peak; the 3 GiB line).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
import urllib.error
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import psutil  # noqa: E402

from bench import report  # noqa: E402
from bench.common import say, stop_on_signals  # noqa: E402
from bench.report import (  # noqa: E402
    OUTSIDE,
    memory_part,
    memory_title,
    memory_total,
    plot_memory,
    summarize_memory,
    write_json,
)
from bench.streaming_bench import MarkerWatcher, PacedProducer  # noqa: E402
from streamlab.airflow_client import AirflowClient  # noqa: E402
from streamlab.config import StackConfig  # noqa: E402
from streamlab.stack.processes import descendants, running_pid, stack_pids  # noqa: E402
from streamlab.stack.registry import services  # noqa: E402

INPUT_TOPIC = "Hello-Kafka"  # DAG streaming_wordcount's default params
OUTPUT_TOPIC = "wordcounts"
LANDING_DAG = "kafka_to_hdfs_landing"
BATCH_DAG = "hdfs_batch_reprocessing"
FINAL_STATES = {"success", "failed"}


def stack_parts(cfg: StackConfig) -> dict[int, str]:
    """pid -> part of every process of the stack, now: each service's process and its
    descendants (`memory_part`), then the stack's processes that left their service's tree
    (OUTSIDE: a spark-submit JVM whose task process was killed is re-parented to init)."""
    found: dict[int, str] = {}
    for svc in services(cfg):
        pid = running_pid(cfg, svc.name)
        for p in [pid, *descendants([pid])] if pid else []:
            try:
                found.setdefault(p, memory_part(svc.name, psutil.Process(p).cmdline()))
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
    for p in stack_pids(str(cfg.home.resolve())):
        found.setdefault(p, OUTSIDE)
    return found


def sample(cfg: StackConfig) -> tuple[dict[str, dict], list[int]]:
    """part -> {"processes", "rss_mib", "pss_mib"} for every process of the stack, now; and
    their pids."""
    parts: dict[str, dict] = {}
    pids: list[int] = []
    for p, name in stack_parts(cfg).items():
        try:
            mem = psutil.Process(p).memory_full_info()
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
        part = parts.setdefault(name, {"processes": 0, "rss_mib": 0.0, "pss_mib": 0.0})
        part["processes"] += 1
        part["rss_mib"] += mem.rss / 2**20
        part["pss_mib"] += mem.pss / 2**20
        pids.append(p)
    return parts, pids


PAGE = os.sysconf("SC_PAGE_SIZE")
PRESENT = np.uint64(1 << 63)
PFN = np.uint64((1 << 55) - 1)


def resident_frames(pid: int) -> np.ndarray:
    """The physical page frames of a process's resident pages (/proc/<pid>/pagemap: bit 63 =
    present, bits 0-54 = frame number; frame numbers read as 0 without CAP_SYS_ADMIN)."""
    found = []
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/pagemap", "rb", buffering=0) as pagemap:
        for line in maps:
            low, high = (int(x, 16) for x in line.split(maxsplit=1)[0].split("-"))
            try:
                entries = os.pread(pagemap.fileno(), (high - low) // PAGE * 8, low // PAGE * 8)
            except OSError:  # [vsyscall] and the like
                continue
            e = np.frombuffer(entries, dtype=np.uint64)
            found.append(e[(e & PRESENT) != 0] & PFN)
    return np.concatenate(found) if found else np.empty(0, dtype=np.uint64)


def stack_rss_mib(pids: list[int]) -> float | None:
    """The stack's resident set as one: its processes' resident pages, each physical page once.
    Summed RSS counts a page once per process that maps it (the pages a fork shares with its
    parent, the libraries); PSS splits them. None when frame numbers are hidden (not root)."""
    frames = []
    for pid in pids:
        try:
            frames.append(resident_frames(pid))
        except OSError:  # the process ended
            continue
    if not frames:
        return None
    distinct = np.unique(np.concatenate(frames))
    if distinct.size and not distinct.any():
        return None
    return distinct.size * PAGE / 2**20


class Sampler(threading.Thread):
    """Samples the stack's memory every `interval` s; keeps each sample's totals and the sample
    with the highest summed RSS. One sample at a time: the main thread's samples (before, after)
    would otherwise interleave with this thread's and keep a lower peak."""

    def __init__(self, cfg: StackConfig, interval: float):
        super().__init__(daemon=True)
        self.cfg, self.interval = cfg, interval
        self.t0 = time.monotonic()
        self.phase = "start"
        self.timeline: list[dict] = []
        self.peak: dict[str, dict] = {}
        self.peak_stack_rss_mib: float | None = None
        self.stopping = threading.Event()
        self.lock = threading.Lock()

    def take(self) -> tuple[dict[str, dict], float | None]:
        with self.lock:
            return self._take()

    def _take(self) -> tuple[dict[str, dict], float | None]:
        parts, pids = sample(self.cfg)
        stack_rss = stack_rss_mib(pids)
        total = memory_total(parts)
        rss, pss = total["rss_mib"], total["pss_mib"]
        self.timeline.append(
            {"t_s": round(time.monotonic() - self.t0, 1), "phase": self.phase, "rss_mib": round(rss, 1),
             "pss_mib": round(pss, 1), "stack_rss_mib": None if stack_rss is None else round(stack_rss, 1)}
        )  # fmt: skip
        if rss > (memory_total(self.peak) or {"rss_mib": 0.0})["rss_mib"]:
            self.peak = parts
        if stack_rss is not None and stack_rss > (self.peak_stack_rss_mib or 0):
            self.peak_stack_rss_mib = stack_rss
        return parts, stack_rss

    def run(self) -> None:
        while not self.stopping.wait(self.interval):
            self.take()


def stream_phase(cfg: StackConfig, rate: int, seconds: float, catch_up_timeout: float) -> dict:
    """`rate` lines/s into the job's input for `seconds`, then the time until the job's count of
    the last line's marker is readable (None: not within the timeout)."""
    tag = uuid.uuid4().hex[:8]
    watcher = MarkerWatcher(cfg, OUTPUT_TOPIC, tag)
    watcher.start()
    producer = PacedProducer(cfg, INPUT_TOPIC, tag)
    try:
        achieved = producer.run(rate, seconds, marker_every=max(1, rate // 10))
        last = producer.seq - 1
        sent_end = time.perf_counter()
        while last not in watcher.seen_at and time.perf_counter() - sent_end < catch_up_timeout:
            time.sleep(0.2)
        caught_up = watcher.seen_at[last] - sent_end if last in watcher.seen_at else None
    finally:
        watcher.stopping.set()
        watcher.join(10)
    return {"rate": rate, "seconds": seconds, "achieved": round(achieved), "lines": producer.produced,
            "caught_up_s": None if caught_up is None else round(max(0.0, caught_up), 2)}  # fmt: skip


def run_dag(client: AirflowClient, dag_id: str, timeout: float, day: datetime | None = None) -> dict:
    """Trigger a run (for the UTC `day` as its data interval: re-run that day's run if there is
    one, as a user reprocessing a day does), wait for its end; its state and duration."""
    body: dict = {"logical_date": None, "conf": {}}
    if day is not None:
        # Without the interval a manual run of a daily timetable covers the day BEFORE its date.
        body.update(logical_date=day.isoformat(), data_interval_start=day.isoformat(),
                    data_interval_end=(day + timedelta(days=1)).isoformat())  # fmt: skip
    try:
        run_id = client.post(f"/dags/{dag_id}/dagRuns", body)["dag_run_id"]
    except urllib.error.HTTPError as exc:
        if exc.code != 409 or day is None:
            raise
        (run,) = client.runs(
            dag_id, logical_date_gte=body["logical_date"], logical_date_lte=body["logical_date"]
        )
        run_id = run["dag_run_id"]
        client.post(f"/dags/{dag_id}/clearTaskInstances",
                    {"dag_run_id": run_id, "only_failed": False, "reset_dag_runs": True, "dry_run": False})  # fmt: skip
    start = time.monotonic()
    state = client.run_state(dag_id, run_id)
    while state not in FINAL_STATES and time.monotonic() - start < timeout:
        time.sleep(2)
        state = client.run_state(dag_id, run_id)
    return {"dag_id": dag_id, "run_id": run_id, "state": state, "seconds": round(time.monotonic() - start, 1)}


def wait_for_streaming_job(cfg: StackConfig, timeout: float) -> None:
    """The workload needs the stack's streaming job: wait for its spark-submit (a run that is
    starting, or restarting after a retry), else say what to do."""
    deadline = time.monotonic() + timeout
    while True:
        parts, _ = sample(cfg)
        if not parts:
            sys.exit(f"no process of the stack at {cfg.home} is running: `make up` first")
        if report.STREAMING_JOB in parts:
            return
        if time.monotonic() > deadline:
            sys.exit(
                f"the streaming word count did not run within {timeout:.0f} s (no spark-submit of "
                "wordcount_stream under the scheduler): `make stream-start`, and see DAG "
                "streaming_wordcount's last run in the Airflow UI"
            )
        say("waiting for the streaming job to run ...")
        time.sleep(5)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rates", default="1000,10000,50000", help="lines/s into the streaming job, in turn")
    p.add_argument("--seconds", type=float, default=60.0, help="seconds of text at each rate")
    p.add_argument("--landings", type=int, default=2, help="runs of the landing DAG, one after the other")
    p.add_argument("--batch", action=argparse.BooleanOptionalAction, default=True,
                   help="one run of the batch DAG for yesterday")  # fmt: skip
    p.add_argument(
        "--settle", type=float, default=30.0, help="seconds of quiet before the figure that counts"
    )
    p.add_argument("--interval", type=float, default=5.0, help="seconds between samples")
    p.add_argument("--catch-up-timeout", type=float, default=300.0)
    p.add_argument("--ready-timeout", type=float, default=240.0, help="seconds to wait for the streaming job")
    p.add_argument("--run-timeout", type=float, default=900.0, help="seconds a DAG run may take")
    p.add_argument("--out", type=Path, help="folder of memory.json / memory.png (default bench/results)")
    p.add_argument("--quick", action="store_true", help="1,000 lines/s for 5 s, one landing, no batch")
    args = p.parse_args(argv)
    if args.quick:
        args.rates, args.seconds, args.landings, args.batch = "1000", 5.0, 1, False
        args.settle, args.interval = 2.0, 1.0
    elif args.out is None:
        args.out = REPO / "bench" / "results"
    args.rates = [int(x) for x in args.rates.split(",") if x]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stop_on_signals()
    args.out = args.out or Path(tempfile.mkdtemp(prefix="memory-bench-quick-"))
    cfg = StackConfig.load()
    wait_for_streaming_job(cfg, args.ready_timeout)
    client = AirflowClient(cfg)
    started = datetime.now(timezone.utc)
    results = {
        "bench": "memory",
        "started": started.isoformat(timespec="seconds"),
        "host": {
            "cpus": os.cpu_count(),
            "load_at_start": os.getloadavg()[0],
            "mem_total_mib": round(psutil.virtual_memory().total / 2**20),
        },
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "complete": False,
    }
    sampler = Sampler(cfg, args.interval)
    results["before"], results["before_stack_rss_mib"] = sampler.take()
    say(
        f"stack {cfg.home}: {sum(p['rss_mib'] for p in results['before'].values()):,.0f} MiB RSS summed before"
    )
    sampler.start()
    try:
        results["stream"] = []
        for rate in args.rates:
            sampler.phase = f"text {rate:,} lines/s"
            say(f"text into {INPUT_TOPIC} at {rate:,} lines/s for {args.seconds:.0f} s ...")
            phase = stream_phase(cfg, rate, args.seconds, args.catch_up_timeout)
            results["stream"].append(phase)
            say(f"  {phase['achieved']:,} lines/s sent; the job caught up "
                + (f"{phase['caught_up_s']} s after the last line" if phase["caught_up_s"] is not None
                   else f"NOT within {args.catch_up_timeout:.0f} s"))  # fmt: skip
        results["runs"] = []
        sampler.phase = "landing runs"
        for i in range(args.landings):
            say(f"landing run {i + 1}/{args.landings} through Airflow ...")
            results["runs"].append(run_dag(client, LANDING_DAG, args.run_timeout))
            say(f"  {results['runs'][-1]['state']} in {results['runs'][-1]['seconds']} s")
        if args.batch:
            sampler.phase = "batch run"
            yesterday = (started - timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
            say(f"batch run for {yesterday.date()} through Airflow ...")
            results["runs"].append(run_dag(client, BATCH_DAG, args.run_timeout, day=yesterday))
            say(f"  {results['runs'][-1]['state']} in {results['runs'][-1]['seconds']} s")
        sampler.phase = "settle"
        say(f"settling {args.settle:.0f} s ...")
        time.sleep(args.settle)
        sampler.stopping.set()
        sampler.join(60)
        results["after"], results["after_stack_rss_mib"] = sampler.take()
        results["complete"] = True
    finally:
        sampler.stopping.set()
        sampler.join(30)
        results["peak"] = sampler.peak
        results["peak_stack_rss_mib"] = sampler.peak_stack_rss_mib
        results["timeline"] = sampler.timeline
        results["summary"] = summarize_memory(results)
        args.out.mkdir(parents=True, exist_ok=True)
        write_json(args.out / "memory.json", results)
        plot_memory(results["summary"], args.out / "memory.png", memory_title(results))
        say(f"wrote {args.out / 'memory.json'} and {args.out / 'memory.png'}")
    for line in memory_table(results["summary"]):
        say(line)
    failed = [r for r in results["runs"] if r["state"] != "success"]
    lagging = [s for s in results["stream"] if s["caught_up_s"] is None]
    if failed or lagging:
        say(f"workload incomplete: {len(failed)} run(s) not successful, {len(lagging)} rate(s) not caught up")
        return 1
    return 0


def memory_table(summary: dict) -> list[str]:
    def mib(value: float | None) -> str:
        return "-" if value is None else f"{value:,.0f}"

    lines = [f"\n{'part':34}{'processes':>10}{'RSS MiB':>10}{'PSS MiB':>10}{'peak RSS':>10}"]
    for row in summary["parts"]:
        after = row["after"] or {"processes": 0, "rss_mib": 0, "pss_mib": 0}
        lines.append(f"{row['part']:34}{after['processes']:>10}{after['rss_mib']:>10,.0f}"
                     f"{after['pss_mib']:>10,.0f}{row['peak_rss_mib']:>10,.0f}")  # fmt: skip
    total = summary["total"]
    lines.append(f"{'summed after the workload':34}{total['processes']:>10}{mib(total['rss_mib']):>10}"
                 f"{mib(total['pss_mib']):>10}{mib(total['peak_rss_mib']):>10}")  # fmt: skip
    lines.append(f"the stack's RSS, each page once: {mib(total['stack_rss_mib'])} MiB after the workload, "
                 f"{mib(total['peak_stack_rss_mib'])} MiB at most during it")  # fmt: skip
    verdict = {True: "met", False: "MISSED", None: "not judged (no figure after the workload)"}
    on = "the stack's RSS" if summary["goal_on"] == "stack_rss_mib" else "summed RSS"
    lines.append(f"goal: at most {summary['goal_rss_mib']:,} MiB RSS after the workload: "
                 f"{verdict[summary['goal_met']]} (judged on {on}; summed RSS "
                 + {True: "within it", False: "over it", None: "not measured"}[summary["summed_rss_within_goal"]]
                 + ")")  # fmt: skip
    return lines


if __name__ == "__main__":
    raise SystemExit(main())
