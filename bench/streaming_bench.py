"""Latency and throughput of the streaming word count (issue 3, "Performance").

    .venv/bin/python bench/streaming_bench.py [--rate 1000] [--seconds 60] [--rates 10000,25000,...]

Against the running local stack (`make up`; or STREAMLAB_HOME=... for another one). It starts
its own instance of spark_jobs/wordcount_stream.py, with the same spark-submit command line as
DAG `streaming_wordcount` (spark_default's master, local[2] by default; checkpoint on HDFS),
on fresh topics `bench-in-<tag>` / `bench-out-<tag>`, so Hello-Kafka and wordcounts are not
touched. Topics and checkpoint are deleted at the end.

1. Latency: --rate lines/s (default 1,000) for --seconds (60), each line ~10 words including a
   unique marker word. Latency of a line = from just before `produce()` to the moment its
   marker's count (1) is read back from the output topic, both clocks in this process. After
   a warm-up of --warmup seconds (not counted). Reported: p50, p90, p99, max, lost markers.
2. Throughput: for each rate of --rates, --seconds of lines (~10 words each, every 200th with a
   marker). The job's lag (lines produced - lines whose marker is visible) is sampled each second.
   It is a saw-tooth (it grows during a micro-batch and drops when the batch's counts appear), so
   its troughs are compared: minimum over the --trough-window seconds around mid-run vs. the
   last --trough-window seconds. A rate is sustained when the producer kept the rate, the end
   trough is at most --max-lag-s seconds of input, the trough grew by less than 2 % of the rate
   per second, and the backlog drained within --max-lag-s + 5 s once producing stopped. The
   ladder stops at the first rate not sustained. Reported: the highest sustained rate.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

from streamlab import deps  # noqa: E402
from streamlab.config import StackConfig  # noqa: E402

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
        """Returns the achieved rate (lines/s)."""
        start = time.perf_counter()
        sent = 0
        pool, n_pool = self.pool, len(self.pool)
        while True:
            now = time.perf_counter()
            elapsed = now - start
            if elapsed >= seconds:
                break
            due = min(int(rate * elapsed) + 1, int(rate * seconds))
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


# ---- the job ----------------------------------------------------------------------------------


def spark_master(cfg: StackConfig) -> str:
    return os.environ.get("STREAMLAB_SPARK_MASTER") or cfg.spark_master


def start_job(
    cfg: StackConfig, in_topic: str, out_topic: str, group: str, log: Path, args: argparse.Namespace
) -> subprocess.Popen:
    confs = [x for kv in args.spark_conf for x in ("--conf", kv)]
    cmd = [
        str(REPO / ".venv" / "bin" / "spark-submit"),
        *confs,
        "--master", spark_master(cfg),
        "--name", f"bench-{group}",
        "--py-files", str(deps.ensure_python_archive()),
        str(JOB), cfg.kafka_bootstrap, in_topic, group,
        "--output-topic", out_topic,
        "--checkpoint", f"/checkpoints/bench/{group}",
        *args.job_arg,
    ]  # fmt: skip
    with open(log, "w") as out:
        return subprocess.Popen(
            cmd, env=cfg.env(), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def stop_job(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)


def delete_checkpoint(cfg: StackConfig, group: str) -> None:
    subprocess.run(
        [str(REPO / "bin" / "hdfs"), "dfs", "-rm", "-r", "-f", "-skipTrash", f"/checkpoints/bench/{group}"],
        env=cfg.env(), capture_output=True, timeout=120,
    )  # fmt: skip


# ---- phases ---------------------------------------------------------------------------------


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


def wait_visible(watcher: MarkerWatcher, seq: int, timeout: float) -> bool:
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        if seq in watcher.seen_at:
            return True
        time.sleep(0.05)
    return False


def latency_phase(producer: PacedProducer, watcher: MarkerWatcher, args) -> dict:
    producer.run(args.rate, args.warmup, marker_every=1, record=False)
    first = producer.seq
    achieved = producer.run(args.rate, args.seconds, marker_every=1)
    last = producer.seq - 1
    wait_visible(watcher, last, 60)
    time.sleep(2)
    lat = [watcher.seen_at[s] - producer.sent_at[s] for s in range(first, last + 1) if s in watcher.seen_at]
    lost = (last - first + 1) - len(lat)
    return {
        "rate": args.rate,
        "achieved": achieved,
        "lines": last - first + 1,
        "p50": percentile(lat, 50),
        "p90": percentile(lat, 90),
        "p99": percentile(lat, 99),
        "max": max(lat),
        "mean": statistics.fmean(lat),
        "lost": lost,
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
            processed = max(0, (visible_seq - base_seq + 1) * every) if visible_seq >= base_seq else 0
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
    # The lag is a saw-tooth (it grows during a micro-batch, drops when the batch's counts become
    # visible): compare its troughs (minimum over a window longer than a batch), mid-run vs. end.
    window = args.trough_window
    mid_t = args.seconds / 2
    mid = min((lag for t, lag in samples if mid_t - window / 2 <= t <= mid_t + window / 2), default=0.0)
    end = min((lag for t, lag in samples if t >= args.seconds - window), default=float("inf"))
    growth = (end - mid) / (args.seconds / 2)  # lines/s of lag gained per second
    lat = [
        watcher.seen_at[s] - producer.sent_at[s] for s in range(base_seq, last + 1) if s in watcher.seen_at
    ]
    sustained = (
        achieved >= 0.97 * rate
        and end <= args.max_lag_s * rate
        and growth <= 0.02 * rate
        and drained
        and drain_s <= args.max_lag_s + 5
    )
    return {
        "rate": rate,
        "achieved": achieved,
        "lines": producer.produced - base_lines,
        "end_lag_lines": end,
        "end_lag_s": end / rate,
        "lag_growth": growth,
        "drain_s": drain_s,
        "p50": percentile(lat, 50) if lat else float("nan"),
        "p99": percentile(lat, 99) if lat else float("nan"),
        "sustained": sustained,
    }


# ---- main -------------------------------------------------------------------------------------


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rate", type=int, default=1000, help="lines/s of the latency phase")
    p.add_argument("--seconds", type=float, default=60.0, help="duration of each measured phase")
    p.add_argument("--warmup", type=float, default=15.0)
    p.add_argument("--rates", default="10000,25000,50000,75000,100000", help="throughput ladder, lines/s")
    p.add_argument("--marker-every", type=int, default=200, help="throughput phase: lines per marker")
    p.add_argument("--max-lag-s", type=float, default=5.0, help="lag allowed at the end, in seconds of input")
    p.add_argument(
        "--trough-window", type=float, default=15.0, help="seconds over which lag troughs are taken"
    )
    p.add_argument("--drain-timeout", type=float, default=120.0)
    p.add_argument("--spark-conf", action="append", default=[], help="k=v, passed as spark-submit --conf")
    p.add_argument(
        "--job-arg", action="append", default=[], help="extra job option, e.g. --job-arg=--trigger=1s"
    )
    p.add_argument("--skip-latency", action="store_true")
    p.add_argument("--skip-throughput", action="store_true")
    args = p.parse_args()

    cfg = StackConfig.load()
    tag = uuid.uuid4().hex[:8]
    in_topic, out_topic, group = f"bench-in-{tag}", f"bench-out-{tag}", f"bench-{tag}"
    admin = AdminClient({"bootstrap.servers": cfg.kafka_bootstrap})
    for f in admin.create_topics(
        [NewTopic(in_topic, 1, 1), NewTopic(out_topic, 1, 1, config={"cleanup.policy": "compact"})]
    ).values():
        f.result(60)
    log = Path(tempfile.gettempdir()) / f"streaming_bench-{tag}.log"
    print(f"stack {cfg.home}; job log {log}; master {spark_master(cfg)}; topics {in_topic} -> {out_topic}")
    job = start_job(cfg, in_topic, out_topic, group, log, args)
    watcher = MarkerWatcher(cfg, out_topic, tag)
    watcher.start()
    producer = PacedProducer(cfg, in_topic, tag)
    results: dict[str, object] = {}
    try:
        # Ready = one marker round-trip (includes the JVM start).
        producer.run(10, 1, marker_every=1)
        if not wait_visible(watcher, 0, 240):
            sys.exit(f"the job produced nothing within 240 s; see {log}")
        print(f"job ready; load average {os.getloadavg()[0]:.1f}")

        if not args.skip_latency:
            r = latency_phase(producer, watcher, args)
            results["latency"] = r
            print(
                f"latency at {r['rate']} lines/s for {args.seconds:.0f} s ({r['lines']} lines, achieved "
                f"{r['achieved']:.0f}/s): p50 {r['p50']:.3f} s  p90 {r['p90']:.3f} s  p99 {r['p99']:.3f} s  "
                f"max {r['max']:.3f} s  lost {r['lost']}",
                flush=True,
            )
        steps = []
        if not args.skip_throughput:
            rates = [int(x) for x in args.rates.split(",") if x]
            # JIT and caches warm at a high rate first, not counted.
            producer.run(rates[0], args.warmup, marker_every=args.marker_every, record=False)
            wait_visible(watcher, producer.seq - 1, args.drain_timeout)
            for rate in rates:
                if job.poll() is not None:
                    sys.exit(f"the job died; see {log}")
                r = throughput_step(producer, watcher, rate, args)
                steps.append(r)
                print(
                    f"rate {rate:>7}/s: achieved {r['achieved']:>8.0f}/s  end lag {r['end_lag_s']:6.2f} s  "
                    f"lag growth {r['lag_growth']:>7.0f} lines/s  drain {r['drain_s']:6.2f} s  "
                    f"p50 {r['p50']:6.2f} s  p99 {r['p99']:6.2f} s  "
                    f"{'sustained' if r['sustained'] else 'NOT sustained'}  (load {os.getloadavg()[0]:.1f})",
                    flush=True,
                )
                if not r["sustained"]:
                    break
            results["throughput"] = steps
    finally:
        watcher.stopping.set()
        stop_job(job)
        admin.delete_topics([in_topic, out_topic])
        delete_checkpoint(cfg, group)

    print()
    print(f"| measure (load average at end {os.getloadavg()[0]:.1f}) | value |")
    print("|---|---|")
    if "latency" in results:
        r = results["latency"]
        print(f"| latency p50 at {r['rate']} lines/s, {args.seconds:.0f} s | {r['p50']:.2f} s |")
        print(f"| latency p99 at {r['rate']} lines/s, {args.seconds:.0f} s | {r['p99']:.2f} s |")
        print(f"| markers lost | {r['lost']} |")
    if steps:
        ok = [s["rate"] for s in steps if s["sustained"]]
        print(
            f"| max sustained rate ({WORDS_PER_LINE} words/line, {args.seconds:.0f} s, lag not growing) | "
            + (f"{max(ok):,} lines/s" if ok else f"< {steps[0]['rate']:,} lines/s")
            + (f" (next step {steps[-1]['rate']:,} not sustained)" if not steps[-1]["sustained"] else "")
            + " |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
