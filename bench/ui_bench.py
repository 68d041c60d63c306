"""The Streamlab page's budget: answer time with 1,000 landing runs of history, and the plugin's memory.

    .venv/bin/python bench/ui_bench.py [--history 1000] [--requests 30] [--json out.json]

Against the running stack (`make up`; the api-server must have loaded plugins/).
1. History: landing reports are added under /data/_landing/reports/ (copies of a real report
   renamed `ui-bench-<n>`) until there are `--history` of them; they are deleted at the end.
2. Answer time: `--requests` logged-in GETs of the page (HTML) and of its data
   (`/streamlab/api/overview`), one per second so the background refreshes run meanwhile.
3. Memory: RSS of a process that builds Airflow's api-server app (`create_app()`) without our
   plugin, against one that builds it with plugins/ and refreshes every section three times
   (the time of each refresh, what only a first request waits for, is measured there).
Prints min/median/max; with --json, writes them.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from streamlab import lake  # noqa: E402
from streamlab.airflow_client import AirflowClient  # noqa: E402
from streamlab.config import StackConfig  # noqa: E402

PREFIX = "ui-bench-"

RSS_PROBE = r"""
import gc, json, sys, time, psutil
from airflow.api_fastapi.app import create_app
app = create_app()
refresh_s = {}
if sys.argv[1] == "with":
    from airflow import plugins_manager
    apps, _ = plugins_manager.get_fastapi_plugins()
    [mine] = [a["app"] for a in apps if a["name"] == "Streamlab"]
    for _ in range(3):
        for name, snap in mine.state.sections.snapshots.items():
            started = time.perf_counter()
            snap.compute()
            refresh_s.setdefault(name, []).append(time.perf_counter() - started)
gc.collect()
print(json.dumps({"rss": psutil.Process().memory_info().rss, "refresh_s": refresh_s}))
"""


def stats(xs: list[float]) -> dict[str, float]:
    return {"min": round(min(xs), 4), "median": round(statistics.median(xs), 4), "max": round(max(xs), 4)}


def fill_history(client, want: int) -> list[str]:
    names = [n for n in client.list(lake.REPORTS_ROOT) if n.endswith(".json")]
    real = [n for n in names if not n.startswith(PREFIX)]
    if not real:
        raise SystemExit(
            "no landing report yet: run the landing once (bin/airflow dags trigger kafka_to_hdfs_landing)"
        )
    with client.read(f"{lake.REPORTS_ROOT}/{real[0]}") as r:
        template = json.loads(r.read())
    added = []
    for i in range(max(0, want - len(names))):
        run_id = f"{PREFIX}{i:05d}"
        client.write(
            f"{lake.REPORTS_ROOT}/{run_id}.json", json.dumps(dict(template, run_id=run_id)), overwrite=True
        )
        added.append(run_id)
        if (i + 1) % 200 == 0:
            print(f"  {i + 1} reports written", flush=True)
    return added


def timed_get(url: str, token: str) -> float:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    started = time.perf_counter()
    with urllib.request.urlopen(req, timeout=60) as r:
        r.read()
        assert r.status == 200, r.status
    return time.perf_counter() - started


def rss(cfg: StackConfig, with_plugin: bool) -> dict:
    env = cfg.env()
    with tempfile.TemporaryDirectory() as empty:
        if not with_plugin:
            env["AIRFLOW__CORE__PLUGINS_FOLDER"] = empty
        out = subprocess.run(
            [str(cfg.venv_bin / "python"), "-c", RSS_PROBE, "with" if with_plugin else "without"],
            env=env, capture_output=True, text=True, timeout=600, cwd=REPO,
        )  # fmt: skip
    if out.returncode:
        raise SystemExit(f"RSS probe failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--history", type=int, default=1000)
    p.add_argument("--requests", type=int, default=30)
    p.add_argument("--rss-rounds", type=int, default=3)
    p.add_argument("--json", type=Path)
    args = p.parse_args()

    import logging

    import hdfs

    logging.getLogger("hdfs").setLevel(logging.WARNING)
    cfg = StackConfig.load()
    client = hdfs.InsecureClient(cfg.webhdfs_url, user="streamlab")
    token = AirflowClient(cfg).token
    print(f"filling the landing history up to {args.history} reports", flush=True)
    added = fill_history(client, args.history)
    try:
        reports = len([n for n in client.list(lake.REPORTS_ROOT) if n.endswith(".json")])
        base = f"{cfg.airflow_url}/streamlab"
        timed_get(f"{base}/api/overview", token)  # the first request waits for a first refresh
        page, data = [], []
        for _ in range(args.requests):
            page.append(timed_get(f"{base}/", token))
            data.append(timed_get(f"{base}/api/overview", token))
            time.sleep(1)
        print(f"  {args.requests} requests of each done", flush=True)
        print("measuring the plugin's memory (api-server app built with and without it)", flush=True)
        without = [rss(cfg, False)["rss"] / 2**20 for _ in range(args.rss_rounds)]
        probes = [rss(cfg, True) for _ in range(args.rss_rounds)]
    finally:
        print(f"deleting the {len(added)} reports added", flush=True)
        for run_id in added:
            client.delete(f"{lake.REPORTS_ROOT}/{run_id}.json")
    with_ = [p["rss"] / 2**20 for p in probes]
    refresh = {
        name: stats([t for p in probes for t in p["refresh_s"][name]]) for name in probes[0]["refresh_s"]
    }
    out = {
        "reports": reports,
        "page_s": stats(page),
        "data_s": stats(data),
        "refresh_s": refresh,
        "rss_mib_without_plugin": stats(without),
        "rss_mib_with_plugin": stats(with_),
        "plugin_rss_mib": round(statistics.median(with_) - statistics.median(without), 1),
    }
    print(json.dumps(out, indent=2))
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
