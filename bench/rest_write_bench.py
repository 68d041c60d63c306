"""Concurrent REST writes against a running stack: each must succeed (budget: none over 30 s).

    .venv/bin/python bench/rest_write_bench.py [--rounds 3] [--writes 24] [--threads 12]

On SQLite, 24 such writes (12 at a time) hung the api-server for good. Each round sends
`--writes` writes through `--threads` threads: a third are triggers of kafka_topics_provision
(their tasks then run while the next writes arrive), the rest pause and unpause
hdfs_batch_reprocessing and kafka_to_hdfs_landing. The DAGs' paused states are put back at the
end, and the triggered runs are waited for. Prints every round's figures; --json writes them.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from streamlab.airflow_client import AirflowClient  # noqa: E402
from streamlab.config import StackConfig  # noqa: E402

TRIGGERED = "kafka_topics_provision"
TOGGLED = ("hdfs_batch_reprocessing", "kafka_to_hdfs_landing")


def one_round(client: AirflowClient, writes: int, threads: int) -> dict:
    calls = []
    for i in range(writes):
        if i % 3 == 0:
            calls.append(("trigger", lambda: client.trigger(TRIGGERED)["dag_run_id"]))
        else:
            dag_id = TOGGLED[i % 2]
            paused = (i // 3) % 2 == 0
            calls.append(
                (
                    f"{'pause' if paused else 'unpause'} {dag_id}",
                    lambda d=dag_id, p=paused: client.set_paused(d, p),
                )
            )

    def timed(call):
        name, fn = call
        start = time.monotonic()
        try:
            result, error = fn(), None
        except Exception as exc:  # noqa: BLE001 (a failed write is a figure of the bench)
            result, error = None, f"{type(exc).__name__}: {exc}"
        return {"call": name, "seconds": time.monotonic() - start, "error": error, "result": result}

    with ThreadPoolExecutor(threads) as pool:
        done = list(pool.map(timed, calls))
    secs = sorted(d["seconds"] for d in done)
    return {
        "writes": len(done),
        "failed": [d for d in done if d["error"]],
        "p50_s": statistics.median(secs),
        "max_s": secs[-1],
        "run_ids": [d["result"] for d in done if d["call"] == "trigger" and d["result"]],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--writes", type=int, default=24)
    parser.add_argument("--threads", type=int, default=12)
    parser.add_argument("--json", type=Path, help="write the figures to this file")
    args = parser.parse_args()

    cfg = StackConfig.load()
    client = AirflowClient(cfg)
    before = {d: client.dag(d)["is_paused"] for d in TOGGLED}
    rounds, run_ids = [], []
    try:
        for n in range(1, args.rounds + 1):
            r = one_round(client, args.writes, args.threads)
            run_ids += r["run_ids"]
            rounds.append({k: v for k, v in r.items() if k != "run_ids"})
            print(
                f"round {n}: {r['writes'] - len(r['failed'])}/{r['writes']} writes succeeded, "
                f"p50 {r['p50_s']:.2f} s, max {r['max_s']:.2f} s",
                flush=True,
            )
            for f in r["failed"]:
                print(f"    FAILED {f['call']} after {f['seconds']:.1f} s: {f['error']}", flush=True)
    finally:
        for dag_id, paused in before.items():
            client.set_paused(dag_id, paused)
    print(f"waiting for the {len(run_ids)} triggered runs of {TRIGGERED} to finish", flush=True)
    states = {}
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        states = {r: client.run_state(TRIGGERED, r) for r in run_ids}
        if all(s in ("success", "failed") for s in states.values()):
            break
        time.sleep(5)
    summary = {
        "rounds": rounds,
        "all_succeeded": all(not r["failed"] for r in rounds),
        "max_s": max(r["max_s"] for r in rounds),
        "triggered_runs": {s: list(states.values()).count(s) for s in set(states.values())},
    }
    print(
        f"all writes succeeded: {summary['all_succeeded']}; slowest write {summary['max_s']:.2f} s "
        f"(budget 30 s); triggered runs: {summary['triggered_runs']}"
    )
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2, default=str))


if __name__ == "__main__":
    main()
