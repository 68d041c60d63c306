"""The no-op landing run of this checkout against a baseline revision, alternating: what a change costs.

    .venv/bin/python bench/landing_noop_ab.py --baseline 4637237 [--rounds 5]

Against the running stack (`make up`). The baseline's landing job and `streamlab/` package are
taken with `git archive` into a temporary folder and run with the same spark-submit, Spark
configuration and jars. Each side lands one small topic into its own root under /bench/<id>/,
then both run `--rounds` no-op runs (nothing new to land), alternating, so both see the same
machine. Reported per side: spark-submit wall and the job's own seconds for the topic (recovery,
plan, decision, commit, snapshot: what the protocol costs), each round, min/median/max, and the
difference of the medians. Everything it creates is deleted at the end.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tarfile
import tempfile
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from landing_bench import landing, produce  # noqa: E402

from streamlab import deps  # noqa: E402
from streamlab import landing as landing_protocol  # noqa: E402
from streamlab.config import StackConfig  # noqa: E402


def checkout(rev: str, into: Path) -> Path:
    """The job file and package of `rev`, and the archive Spark ships to its workers."""
    archive = subprocess.run(
        ["git", "archive", rev, "spark_jobs", "streamlab"], cwd=REPO, capture_output=True, check=True
    ).stdout
    tar = into / "src.tar"
    tar.write_bytes(archive)
    with tarfile.open(tar) as t:
        t.extractall(into, filter="data")
    zip_path = into / "streamlab.zip"
    deps.build_python_archive(zip_path, into / "streamlab")
    return zip_path


def spread(xs: list[float]) -> dict[str, float]:
    return {"min": min(xs), "median": round(statistics.median(xs), 2), "max": max(xs)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--baseline", required=True, help="git revision to compare with (e.g. 4637237)")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()

    cfg = StackConfig.load()
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": cfg.kafka_bootstrap})
    bench_id = uuid.uuid4().hex[:8]
    topic, root = f"bench-noop-{bench_id}", f"/bench/{bench_id}"
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result()
    out: dict = {"baseline": args.baseline, "head": _head(), "rounds": []}
    with tempfile.TemporaryDirectory(prefix="landing-ab-") as tmp:
        base_dir = Path(tmp)
        sides = {
            "baseline": {"job": base_dir / "spark_jobs" / "kafka_to_hdfs_landing.py", "archive": None},
            "head": {"job": REPO / "spark_jobs" / "kafka_to_hdfs_landing.py", "archive": None},
        }
        sides["baseline"]["archive"] = checkout(args.baseline, base_dir)
        try:
            produce(cfg, topic, 100, 100, 1)
            for side, s in sides.items():  # the first run of each side lands the 100 records
                landing(cfg, topic, f"{root}/{side}", f"ab-{bench_id}-{side}-first", [], **s)
            for k in range(args.rounds):
                row = {}
                for side, s in sides.items():
                    wall, report = landing(cfg, topic, f"{root}/{side}", f"ab-{bench_id}-{side}-{k}", [], **s)
                    t = report["topics"][0]
                    assert t["totals"]["records"] == 0, t  # a no-op
                    row[side] = {
                        "wall_s": round(wall, 2),
                        "in_job_s": t["seconds"],
                        "timings_s": t.get("timings_s"),
                    }
                out["rounds"].append(row)
                print(f"round {k + 1}/{args.rounds}: {json.dumps(row)}", flush=True)
        finally:
            admin.delete_topics([topic], operation_timeout=60)
            import hdfs

            client = hdfs.InsecureClient(cfg.webhdfs_url, user="streamlab")
            for side in sides:
                landing_protocol.release_snapshots(client, f"{root}/{side}/raw/{topic}")
            client.delete(root, recursive=True)
    for side in ("baseline", "head"):
        for key in ("wall_s", "in_job_s"):
            out[f"{side}_{key}"] = spread([r[side][key] for r in out["rounds"]])
    for key in ("wall_s", "in_job_s"):
        out[f"median_difference_{key}"] = round(
            out[f"head_{key}"]["median"] - out[f"baseline_{key}"]["median"], 2
        )
    print(json.dumps({k: v for k, v in out.items() if k != "rounds"}, indent=2))
    return 0


def _head() -> str:
    return subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
    ).stdout.strip()


if __name__ == "__main__":
    sys.exit(main())
