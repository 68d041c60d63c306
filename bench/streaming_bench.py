"""The streaming word count against a Kafka Streams peer: latency and throughput, side by side.

    .venv/bin/python bench/streaming_bench.py [--rounds 2] [--latency-rates 1000,10000]
        [--rates 5000,10000,25000,...] [--seconds 60] [--systems spark,kafka_streams] [--out DIR]
    .venv/bin/python bench/streaming_bench.py --quick     # the whole pipeline in about a minute

Against the running local stack (`make up`; or STREAMLAB_HOME=... for another one). One input
topic `bench-in-<tag>` for the whole run; each system, in turn and alone, reads it from its end
and writes its running totals to its own compacted topic:
- `spark`: spark_jobs/wordcount_stream.py, with the spark-submit command line of DAG
  `streaming_wordcount` (spark_default's master, local[2] by default; checkpoint on HDFS);
- `kafka_streams`: bench/kafka_streams (the same words, totals as the same text values),
  exactly_once_v2 and 2 stream threads, -Xmx512m (the heap the stack gives Spark's drivers), `make bench-deps`
  builds it (this script too, on first use).
Rounds alternate the order (spark first, then the peer first, ...): background load that drifts
during a run (the stack's own landing every 10 minutes) falls on both.

Per system and round:
1. Latency at each --latency-rates (lines/s) for --seconds after --warmup seconds: each line ~10
   words; a unique marker word on every line at 1,000 lines/s (every rate/1000-th line above).
   Latency of a line = from just before `produce()` to the moment its marker's count is read back
   from the system's output topic (read_committed), both clocks in this process. p50/p90/p99/max,
   markers lost.
2. Throughput ladder (--rates): --seconds of lines at each rate (every 200th with a marker). The
   lag (lines produced - lines whose marker is visible) is sampled each second; a rate is
   sustained when the producer kept it, the lag's trough at the end is at most --max-lag-s
   seconds of input and grew by less than 2 % of the rate per second since mid-run, and the
   backlog drained within --max-lag-s + 5 s. The ladder stops at the first rate not sustained.
3. Memory: the RSS of the system's processes (largest of the samples after each phase).

Writes <out>/streaming.json (every round, the summary, the ratios Spark / peer, the goals of
issue 12) and <out>/streaming.png (latency over input rate; highest sustained rate), and prints
a table. Topics, checkpoints and the peer's state are deleted at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import psutil  # noqa: E402
from confluent_kafka import (  # noqa: E402
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

from bench.common import say, stop_on_signals  # noqa: E402
from bench.report import (  # noqa: E402
    finite,
    percentile,
    plot_streaming,
    streaming_title,
    summarize_streaming,
    write_json,
)
from streamlab import deps  # noqa: E402
from streamlab.config import StackConfig  # noqa: E402
from streamlab.stack.java import java_binary  # noqa: E402

JOB = REPO / "spark_jobs" / "wordcount_stream.py"
WORDS_PER_LINE = 10
TICK_S = 0.005  # the producer paces itself in ticks of 5 ms


# ---- input ------------------------------------------------------------------------------------


def vocabulary(size: int = 5000, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    letters = "abcdefghijklmnopqrstuvwxyzéèàçô"
    return ["".join(rng.choice(letters) for _ in range(rng.randint(2, 10))) for _ in range(size)]


def line_pool(n: int = 20_000, seed: int = 11) -> list[bytes]:
    """Lines of WORDS_PER_LINE words with punctuation, like text (about 70 bytes each)."""
    rng = random.Random(seed)
    vocab = vocabulary()
    punct = [" ", " ", " ", ", ", "; ", ". ", "! "]
    return [
        "".join(rng.choice(vocab) + rng.choice(punct) for _ in range(WORDS_PER_LINE)).strip().encode()
        for _ in range(n)
    ]


def marker(tag: str, seq: int) -> str:
    return f"zq{tag}n{seq}"  # letters and digits only: one word


def marker_seq(word: str, prefix: str) -> int | None:
    return int(word[len(prefix) :]) if word.startswith(prefix) else None


class PacedProducer:
    """Produces `rate` lines/s for `seconds`; every `marker_every`-th line starts with a marker."""

    def __init__(self, cfg: StackConfig, topic: str, tag: str):
        self.topic, self.tag = topic, tag
        self.producer = Producer(
            {
                "bootstrap.servers": cfg.kafka_bootstrap,
                "linger.ms": 5,
                "compression.type": "lz4",
                "queue.buffering.max.messages": 2_000_000,
                "queue.buffering.max.kbytes": 1_048_576,
            }
        )
        self.pool = line_pool()
        self.sent_at: dict[int, float] = {}  # marker seq -> time just before produce()
        self.produced = 0  # lines, all phases
        self.seq = 0  # next marker sequence number

    def run(self, rate: float, seconds: float, marker_every: int, record: bool = True) -> float:
        """Sends rate x seconds lines over `seconds`; returns the achieved rate (lines/s). A tick
        late past the end (a busy machine) sends what is left at once rather than dropping it."""
        start = time.perf_counter()
        sent, total = 0, int(rate * seconds)
        pool, n_pool = self.pool, len(self.pool)
        while True:
            now = time.perf_counter()
            elapsed = now - start
            due = total if elapsed >= seconds else min(int(rate * elapsed) + 1, total)
            while sent < due:
                if sent % marker_every == 0:
                    seq = self.seq
                    self.seq += 1
                    value = (marker(self.tag, seq) + " " + pool[sent % n_pool].decode()).encode()
                    if record:
                        self.sent_at[seq] = time.perf_counter()
                else:
                    value = pool[(sent + self.produced) % n_pool]
                self._produce(value)
                sent += 1
            self.producer.poll(0)
            if elapsed >= seconds:
                break
            time.sleep(max(0.0, TICK_S - (time.perf_counter() - now)))
        self.producer.flush(60)
        self.produced += sent
        return sent / (time.perf_counter() - start)

    def _produce(self, value: bytes) -> None:
        while True:
            try:
                self.producer.produce(self.topic, value)
                return
            except BufferError:
                self.producer.poll(0.005)


class MarkerWatcher(threading.Thread):
    """Reads the output topic; remembers when each marker first became visible."""

    def __init__(self, cfg: StackConfig, topic: str, tag: str):
        super().__init__(daemon=True)
        self.prefix = marker(tag, 0)[:-1]
        self.seen_at: dict[int, float] = {}
        self.max_seq = -1
        self.stopping = threading.Event()
        self.consumer = Consumer(
            {
                "bootstrap.servers": cfg.kafka_bootstrap,
                "group.id": f"bench-{uuid.uuid4().hex}",
                "enable.auto.commit": False,
                "fetch.wait.max.ms": 10,
                "fetch.min.bytes": 1,
            }
        )
        self.consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])

    def run(self) -> None:
        while not self.stopping.is_set():
            for msg in self.consumer.consume(10_000, timeout=0.05):
                if msg.error() or msg.key() is None:
                    continue
                seq = marker_seq(msg.key().decode("utf-8", "replace"), self.prefix)
                if seq is not None and seq not in self.seen_at:
                    self.seen_at[seq] = time.perf_counter()
                    self.max_seq = max(self.max_seq, seq)
        self.consumer.close()


# ---- the systems under test -------------------------------------------------------------------


class WordCount:
    """One word count reading `in_topic` from its end, writing totals to `out_topic`."""

    name = ""

    def __init__(self, cfg: StackConfig, in_topic: str, out_topic: str, ident: str, log: Path, args):
        self.cfg, self.in_topic, self.out_topic, self.ident, self.log, self.args = (
            cfg, in_topic, out_topic, ident, log, args,
        )  # fmt: skip
        self.proc: subprocess.Popen | None = None

    def command(self) -> list[str]:
        raise NotImplementedError

    def start(self) -> None:
        with open(self.log, "w") as out:
            self.proc = subprocess.Popen(
                self.command(),
                env=self.cfg.env(),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def rss_mib(self) -> float | None:
        """RSS of the process and all its descendants (the JVMs, Spark's Python workers)."""
        if not self.alive():
            return None
        try:
            root = psutil.Process(self.proc.pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return None
        total = 0
        for proc in procs:
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                total += proc.memory_info().rss
        return total / 2**20

    def stop(self) -> None:
        if self.alive():
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(30)

    def cleanup(self, admin: AdminClient) -> None:
        """Delete what the system left in Kafka and on disk (after stop())."""


class SparkWordCount(WordCount):
    name = "spark"

    def command(self) -> list[str]:
        confs = [x for kv in self.args.spark_conf for x in ("--conf", kv)]
        return [
            str(REPO / ".venv" / "bin" / "spark-submit"),
            *confs,
            "--master", spark_master(self.cfg),
            "--name", f"bench-{self.ident}",
            "--py-files", str(deps.ensure_python_archive()),
            str(JOB), self.cfg.kafka_bootstrap, self.in_topic, self.ident,
            "--output-topic", self.out_topic,
            "--checkpoint", f"{CHECKPOINTS}/{self.ident}",
            "--starting-offsets", "latest",
            *self.args.job_arg,
        ]  # fmt: skip

    def cleanup(self, admin: AdminClient) -> None:
        subprocess.run(
            [str(REPO / "bin" / "hdfs"), "dfs", "-rm", "-r", "-f", "-skipTrash", f"{CHECKPOINTS}/{self.ident}"],
            env=self.cfg.env(), capture_output=True, timeout=120,
        )  # fmt: skip
        delete_groups(admin, [self.ident])


class KafkaStreamsWordCount(WordCount):
    name = "kafka_streams"

    def command(self) -> list[str]:
        self.state_dir = Path(tempfile.mkdtemp(prefix=f"{self.ident}-state-"))
        classpath = os.pathsep.join(deps.bench_peer_classpath(self.cfg))
        settings = [f"state.dir={self.state_dir}", "num.stream.threads=2", *self.args.peer_conf]
        return [
            java_binary(), f"-Xmx{self.args.peer_heap}", "-cp", classpath, "streamlab.bench.KafkaStreamsWordCount",
            self.cfg.kafka_bootstrap, self.in_topic, self.out_topic, self.ident, *settings,
        ]  # fmt: skip

    def cleanup(self, admin: AdminClient) -> None:
        shutil.rmtree(getattr(self, "state_dir", ""), ignore_errors=True)
        # Its repartition and changelog topics (its output topic is the bench's).
        internal = [
            t
            for t in admin.list_topics(timeout=30).topics
            if t.startswith(f"{self.ident}-") and t != self.out_topic
        ]
        delete_topics(admin, internal)
        delete_groups(admin, [self.ident])


SYSTEMS = {cls.name: cls for cls in (SparkWordCount, KafkaStreamsWordCount)}
CHECKPOINTS = "/checkpoints/bench"


def spark_master(cfg: StackConfig) -> str:
    return os.environ.get("STREAMLAB_SPARK_MASTER") or cfg.spark_master


def delete_groups(admin: AdminClient, groups: list[str]) -> None:
    """Delete the groups; a member still leaving (NON_EMPTY_GROUP) is waited for, up to 60 s."""
    deadline = time.monotonic() + 60
    while groups:
        retry = []
        for group, future in admin.delete_consumer_groups(groups, request_timeout=30).items():
            try:
                future.result()
            except KafkaException as err:
                code = err.args[0].code()
                if code == KafkaError.NON_EMPTY_GROUP and time.monotonic() < deadline:
                    retry.append(group)
                elif code != KafkaError.GROUP_ID_NOT_FOUND:  # never committed: nothing to delete
                    say(f"warning: consumer group {group} not deleted: {err}")
        groups = retry
        if groups:
            time.sleep(2)


def delete_topics(admin: AdminClient, topics: list[str]) -> None:
    if not topics:
        return
    for topic, future in admin.delete_topics(topics, operation_timeout=60).items():
        try:
            future.result()
        except KafkaException as err:
            if err.args[0].code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
                say(f"warning: topic {topic} not deleted: {err}")


# ---- phases ---------------------------------------------------------------------------------


def wait_visible(watcher: MarkerWatcher, seq: int, timeout: float) -> bool:
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        if seq in watcher.seen_at:
            return True
        time.sleep(0.05)
    return False


class SystemFailed(Exception):
    """The system under test died or never counted: its round is recorded as failed."""


def check_alive(system: WordCount) -> None:
    if not system.alive():
        raise SystemFailed(f"{system.name} exited with {system.proc.returncode}; see {system.log}")


def wait_ready(producer: PacedProducer, watcher: MarkerWatcher, system: WordCount, timeout: float) -> float:
    """Seconds from start until a marker made the round trip. The system reads from the end of
    the topic as it was when it first asked: markers are sent every second until one is seen."""
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        check_alive(system)
        producer.run(1, 1, marker_every=1)
        if watcher.seen_at:
            return time.perf_counter() - start
    raise SystemFailed(f"{system.name} counted nothing within {timeout:.0f} s; see {system.log}")


def wait_all_visible(watcher: MarkerWatcher, first: int, last: int, timeout: float) -> None:
    deadline = time.perf_counter() + timeout
    pending = range(first, last + 1)
    while time.perf_counter() < deadline:
        pending = [s for s in pending if s not in watcher.seen_at]
        if not pending:
            return
        time.sleep(0.1)


def latencies(producer: PacedProducer, watcher: MarkerWatcher, first: int, last: int) -> list[float]:
    """Seconds from produce to visible count of markers first..last; a lost marker is infinitely
    late (it weighs in the percentiles instead of leaving them)."""
    seen, sent = watcher.seen_at, producer.sent_at
    return [seen[s] - sent[s] if s in seen else math.inf for s in range(first, last + 1)]


def latency_phase(producer: PacedProducer, watcher: MarkerWatcher, rate: int, args) -> dict:
    every = max(1, rate // 1000)  # about 1,000 markers/s: each is a new word in the state
    producer.run(rate, args.warmup, marker_every=every, record=False)
    first = producer.seq
    achieved = producer.run(rate, args.seconds, marker_every=every)
    last = producer.seq - 1
    wait_all_visible(watcher, first, last, args.drain_timeout)
    lat = latencies(producer, watcher, first, last)
    seen = [x for x in lat if math.isfinite(x)]
    return {
        "rate": rate,
        "achieved": achieved,
        "markers": len(lat),
        "p50": finite(percentile(lat, 50)),
        "p90": finite(percentile(lat, 90)),
        "p99": finite(percentile(lat, 99)),
        "max": finite(max(lat)),
        "mean_seen": statistics.fmean(seen) if seen else None,
        "lost": len(lat) - len(seen),
        "load": os.getloadavg()[0],
    }


def throughput_step(producer: PacedProducer, watcher: MarkerWatcher, rate: int, args) -> dict:
    every = args.marker_every
    base_seq, base_lines = producer.seq, producer.produced
    samples: list[tuple[float, float]] = []  # (t, lag in lines)
    done = threading.Event()
    start = time.perf_counter()

    def sample() -> None:
        while not done.wait(1.0):
            t = time.perf_counter() - start
            produced_est = min(rate * t, rate * args.seconds)
            visible_seq = watcher.max_seq
            # Marker k is the first line of its `every`: lines up to it are counted.
            processed = (visible_seq - base_seq) * every + 1 if visible_seq >= base_seq else 0
            samples.append((t, max(0.0, produced_est - processed)))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    achieved = producer.run(rate, args.seconds, marker_every=every)
    done.set()
    sampler.join()
    last = producer.seq - 1
    drain_start = time.perf_counter()
    drained = wait_visible(watcher, last, args.drain_timeout)
    drain_s = time.perf_counter() - drain_start if drained else float("inf")
    # The job's sink writes a batch from parallel tasks: markers before the last one may still be
    # in flight when it shows up. Not lost (nor infinitely late) for that.
    wait_all_visible(watcher, base_seq, last, 5.0 if drained else 0.0)
    lat = latencies(producer, watcher, base_seq, last)
    verdict = judge_step(samples, rate, achieved, drain_s, args.seconds, args.trough_window, args.max_lag_s)
    return {
        "rate": rate,
        "achieved": achieved,
        "lines": producer.produced - base_lines,
        **verdict,
        "drain_s": finite(drain_s),
        "p50": finite(percentile(lat, 50)) if lat else None,
        "p99": finite(percentile(lat, 99)) if lat else None,
        "lost": sum(1 for x in lat if math.isinf(x)),
        "load": os.getloadavg()[0],
    }


def judge_step(
    samples: list[tuple[float, float]],
    rate: float,
    achieved: float,
    drain_s: float,
    seconds: float,
    window: float,
    max_lag_s: float,
) -> dict:
    """Was `rate` sustained? The lag is a saw-tooth (it grows during a micro-batch or a commit
    interval and drops when the counts become visible): its troughs (minimum over a window longer
    than a batch) are compared, mid-run vs. the end."""
    mid_t = seconds / 2
    mid = min((lag for t, lag in samples if mid_t - window / 2 <= t <= mid_t + window / 2), default=0.0)
    end = min((lag for t, lag in samples if t >= seconds - window), default=float("inf"))
    growth = (end - mid) / (seconds / 2)  # lines/s of lag gained per second
    # What stopped it: the bench's own producer (then the figure is a floor), the lag, the drain.
    if achieved < 0.97 * rate:
        limited_by = "producer"
    elif not (end <= max_lag_s * rate and growth <= 0.02 * rate):
        limited_by = "lag"
    elif not drain_s <= max_lag_s + 5:
        limited_by = "drain"
    else:
        limited_by = None
    return {
        "end_lag_s": finite(end / rate),
        "lag_growth": finite(growth),
        "sustained": limited_by is None,
        "limited_by": limited_by,
    }


def measure(system: WordCount, producer: PacedProducer, args) -> dict:
    """Start the system, run every phase against it alone, stop it. A system that dies or never
    counts is a result too: `error` says so, the phases done so far are kept."""
    rss: list[float | None] = []
    result: dict = {"latency": [], "throughput": []}
    watcher = MarkerWatcher(system.cfg, system.out_topic, producer.tag)
    try:
        watcher.start()
        system.start()
        result["ready_s"] = wait_ready(producer, watcher, system, args.ready_timeout)
        say(f"  {system.name}: counting after {result['ready_s']:.1f} s (load {os.getloadavg()[0]:.1f})")
        for rate in args.latency_rates:
            say(
                f"  {system.name}: latency at {rate:,} lines/s, {args.warmup:.0f} s warm-up + {args.seconds:.0f} s ..."
            )
            r = latency_phase(producer, watcher, rate, args)
            result["latency"].append(r)
            rss.append(system.rss_mib())
            say(
                f"  {system.name}: latency at {rate:,} lines/s ({r['markers']} markers, achieved "
                f"{r['achieved']:,.0f}/s): p50 {fmt(r['p50'])}  p90 {fmt(r['p90'])}  p99 {fmt(r['p99'])}  "
                f"max {fmt(r['max'])}  lost {r['lost']}  (load {os.getloadavg()[0]:.1f})"
            )
            check_alive(system)
        if args.rates:
            # JIT and caches warm at the first rate, not counted.
            producer.run(args.rates[0], args.warmup, marker_every=args.marker_every, record=False)
            wait_visible(watcher, producer.seq - 1, args.drain_timeout)
        for rate in args.rates:
            say(f"  {system.name}: throughput at {rate:,} lines/s for {args.seconds:.0f} s ...")
            r = throughput_step(producer, watcher, rate, args)
            if not system.alive():
                r.update(sustained=False, limited_by="died")
            result["throughput"].append(r)
            rss.append(system.rss_mib())
            say(
                f"  {system.name}: rate {rate:>7,}/s  achieved {r['achieved']:>8,.0f}/s  end lag "
                f"{fmt(r['end_lag_s'])}  drain {fmt(r['drain_s'])}  p50 {fmt(r['p50'])}  p99 {fmt(r['p99'])}  "
                + ("sustained" if r["sustained"] else f"NOT sustained ({r['limited_by']})")
                + f"  (load {os.getloadavg()[0]:.1f})"
            )
            if not r["sustained"]:
                break
        check_alive(system)
    except SystemFailed as failed:
        result["error"] = str(failed)
        say(f"  {system.name}: FAILED: {failed}")
    finally:
        watcher.stopping.set()
        system.stop()
    result["rss_mib"] = max((m for m in rss if m is not None), default=None)
    return result


def fmt(seconds: float | None) -> str:
    return "  -   " if seconds is None else f"{seconds:6.3f} s"


# ---- main -------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--systems", default="spark,kafka_streams", help=f"comma-separated, of {', '.join(SYSTEMS)}"
    )
    p.add_argument("--rounds", type=int, default=2, help="rounds; each measures every system once")
    p.add_argument("--latency-rates", default="1000,10000", help="lines/s of the latency phases")
    p.add_argument("--rates", default="5000,10000,25000,50000,75000,100000,150000", help="throughput ladder")
    p.add_argument("--seconds", type=float, default=60.0, help="duration of each measured phase")
    p.add_argument("--warmup", type=float, default=15.0)
    p.add_argument("--marker-every", type=int, default=200, help="throughput phase: lines per marker")
    p.add_argument("--max-lag-s", type=float, default=5.0, help="lag allowed at the end, in seconds of input")
    p.add_argument(
        "--trough-window", type=float, default=15.0, help="seconds over which lag troughs are taken"
    )
    p.add_argument("--drain-timeout", type=float, default=60.0)
    p.add_argument("--ready-timeout", type=float, default=240.0)
    p.add_argument("--spark-conf", action="append", default=[], help="k=v, passed as spark-submit --conf")
    p.add_argument(
        "--job-arg", action="append", default=[], help="extra Spark job option, e.g. --job-arg=--trigger=1s"
    )
    p.add_argument(
        "--peer-conf", action="append", default=[], help="k=v, a Kafka Streams setting of the peer"
    )
    p.add_argument("--peer-heap", default="512m", help="the peer's -Xmx (the Spark driver's heap)")
    p.add_argument(
        "--out", type=Path, help="folder of streaming.json / streaming.png (default bench/results)"
    )
    p.add_argument(
        "--quick", action="store_true", help="1 round, 3 s phases, one rate each: proves the pipeline"
    )
    args = p.parse_args(argv)
    if args.quick:
        args.rounds, args.seconds, args.warmup = 1, 3.0, 1.0
        args.trough_window, args.drain_timeout = 2.0, 30.0
        args.latency_rates, args.rates, args.marker_every = "1000", "2000", 20
    elif args.out is None:
        args.out = REPO / "bench" / "results"  # --quick: a temp folder, made by main()
    args.systems = [s for s in args.systems.split(",") if s]
    unknown = set(args.systems) - set(SYSTEMS)
    if unknown:
        p.error(f"unknown system(s) {', '.join(sorted(unknown))}; known: {', '.join(SYSTEMS)}")
    args.latency_rates = [int(x) for x in args.latency_rates.split(",") if x]
    args.rates = [int(x) for x in args.rates.split(",") if x]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    stop_on_signals()
    args.out = args.out or Path(tempfile.mkdtemp(prefix="streaming-bench-quick-"))
    cfg = StackConfig.load()
    if "kafka_streams" in args.systems:
        deps.build_bench_peer(cfg)
    tag = uuid.uuid4().hex[:8]
    in_topic = f"bench-in-{tag}"
    admin = AdminClient({"bootstrap.servers": cfg.kafka_bootstrap})
    logs = Path(tempfile.mkdtemp(prefix=f"streaming-bench-{tag}-"))
    say(f"stack {cfg.home}; master {spark_master(cfg)}; input {in_topic}; logs {logs}; "
        f"{args.rounds} round(s) of {', '.join(args.systems)}")  # fmt: skip
    started = datetime.now(timezone.utc)
    results = {
        "bench": "streaming",
        "started": started.isoformat(timespec="seconds"),
        "host": {"cpus": os.cpu_count(), "load_at_start": os.getloadavg()[0]},
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "topics": [in_topic],
        "rounds": [],
        "complete": False,
    }
    json_path, png_path = args.out / "streaming.json", args.out / "streaming.png"
    try:
        for f in admin.create_topics([NewTopic(in_topic, 1, 1)]).values():
            f.result(60)
        producer = PacedProducer(cfg, in_topic, tag)
        for n in range(args.rounds):
            order = args.systems if n % 2 == 0 else args.systems[::-1]
            say(f"round {n + 1}/{args.rounds}: {' then '.join(order)}")
            systems = {}
            for name in order:
                ident = f"bench-{tag}-{name.replace('_', '-')}-{n + 1}"
                out_topic = f"{ident}-out"
                results["topics"].append(out_topic)
                for f in admin.create_topics(
                    [NewTopic(out_topic, 1, 1, config={"cleanup.policy": "compact"})]
                ).values():
                    f.result(60)
                system = SYSTEMS[name](cfg, in_topic, out_topic, ident, logs / f"{ident}.log", args)
                try:
                    systems[name] = measure(system, producer, args)
                finally:
                    system.cleanup(admin)
            results["rounds"].append({"round": n + 1, "order": order, "systems": systems})
            # After every round: an interrupted run keeps the rounds it finished.
            results["host"]["load_at_end"] = os.getloadavg()[0]
            results["summary"] = summarize_streaming(results["rounds"])
            results["complete"] = n + 1 == args.rounds
            write_json(json_path, results)
            plot_streaming(results["summary"], png_path, streaming_title(results))
    finally:
        delete_topics(admin, results["topics"])

    summary = results["summary"]
    print()
    for line in summary_table(summary):
        print(line)
    say(f"\nwrote {json_path} and {png_path}")
    failed = [f"{name} in round {r['round']}" for r in results["rounds"] for name, run in r["systems"].items()
              if "error" in run]  # fmt: skip
    if failed:
        say(f"FAILED: {', '.join(failed)} (see `error` in {json_path})")
    return 1 if failed else 0


def summary_table(summary: dict) -> list[str]:
    def cell(s: dict | None, unit: str = " s", digits: int = 2) -> str:
        if not s:
            return "-"

        def num(x: float) -> str:
            return "unbounded" if math.isinf(x) else f"{x:,.{digits}f}"

        return f"{num(s['median'])}{unit} ({num(s['min'])}-{num(s['max'])})"

    systems = summary["systems"]
    names = list(systems)
    rows = [
        "| measure (median of rounds, min-max) | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    rates = sorted({int(r) for n in names for r in systems[n]["latency"]})
    for rate in rates:
        for q in ("p50", "p99"):
            cells = [cell(systems[n]["latency"].get(str(rate), {}).get(q)) for n in names]
            rows.append(f"| latency {q} at {rate:,} lines/s | " + " | ".join(cells) + " |")
        lost = [str(systems[n]["latency"].get(str(rate), {}).get("lost", "-")) for n in names]
        rows.append(f"| markers lost at {rate:,} lines/s | " + " | ".join(lost) + " |")
    rows.append(
        "| highest sustained rate (lines/s) | "
        + " | ".join(
            ("at least " if systems[n]["capped"] else "") + cell(systems[n]["max_sustained"], "", 0)
            for n in names
        )
        + " |"
    )
    rows.append(
        "| RSS of its processes (MiB) | "
        + " | ".join(cell(systems[n]["rss_mib"], "", 0) for n in names)
        + " |"
    )
    rows.append("| failed rounds | " + " | ".join(str(systems[n]["failed_rounds"]) for n in names) + " |")
    ratios = summary.get("ratios")
    if ratios:

        def times(r: float | None) -> str:
            return "-" if r is None else f"{r:.2f}x"

        rows.append("")
        rows.append(
            f"Spark / peer: sustained throughput {times(ratios['throughput'])}; p99 "
            + ", ".join(f"{times(r)} at {int(rate):,} lines/s" for rate, r in ratios["p99"].items())
        )
        rows.append("goals: " + ", ".join(f"{k} {v}" for k, v in summary["goals"].items()))
    return rows


if __name__ == "__main__":
    sys.exit(main())
