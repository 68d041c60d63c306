"""Start-up time and idle memory of the local stack (goals: up from stopped <= 30 s).

    .venv/bin/python bench/stack_bench.py [--idle 60] [--restarts 3] [--home DIR] [--out DIR]
    .venv/bin/python bench/stack_bench.py --quick     # 1 restart, 5 s idle, no platform DAGs

Runs an isolated stack (temp state folder, free ports) so a developer's stack is untouched:
1. first `up` (initdb, formats storage, migrates Airflow's database),
2. `down`, then `up` again, --restarts times: "from stopped to all healthy" (`up`'s own figure)
   and the whole `up` command (with the topics provisioning), every round printed,
3. `up` again while running (a no-op),
4. idle for --idle seconds, then the memory of every process of the stack, by part (as
   bench/memory_bench.py, which measures it after a workload): summed RSS, summed PSS, and the
   stack's RSS with each resident page once,
5. `down`, and a check that no process of the stack is left.

Writes <out>/stack.json and <out>/stack.png (the restarts against the goal; idle memory by part).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.common import say, stop_on_signals  # noqa: E402
from bench.memory_bench import sample, stack_rss_mib  # noqa: E402
from bench.report import part_rank, plot_stack, stack_title, summarize_stack, write_json  # noqa: E402
from streamlab.config import StackConfig, free_ports  # noqa: E402
from streamlab.stack.processes import stack_pids  # noqa: E402
from streamlab.stack.registry import port_defaults  # noqa: E402


def timed(cmd: str, env: dict[str, str]) -> tuple[float, str]:
    """Wall seconds of `python -m streamlab.stack <cmd>` (what `make up` / `make down` run), and
    its output."""
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "streamlab.stack", cmd], cwd=REPO, env=env,
                          capture_output=True, text=True)  # fmt: skip
    elapsed = time.monotonic() - start
    if proc.returncode != 0:
        sys.exit(f"`{cmd}` failed:\n{proc.stdout}\n{proc.stderr}")
    return elapsed, proc.stdout


def healthy_after(up_output: str) -> float | None:
    """`up`'s own figure: start to all services healthy (before it provisions the topics)."""
    found = re.search(r"all services healthy in ([\d.]+) s", up_output)
    return float(found.group(1)) if found else None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--idle", type=float, default=60, help="seconds idle before the memory is read")
    p.add_argument("--restarts", type=int, default=3, help="`down` then `up`, this many times")
    p.add_argument("--home", type=Path, help="state folder (default: a new temp folder, removed after)")
    p.add_argument("--out", type=Path, help="folder of stack.json / stack.png (default bench/results)")
    p.add_argument("--quick", action="store_true", help="1 restart, 5 s idle, without the platform DAGs")
    args = p.parse_args(argv)
    if args.quick:
        args.idle, args.restarts = 5.0, 1
    elif args.out is None:
        args.out = REPO / "bench" / "results"
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stop_on_signals()
    args.out = args.out or Path(tempfile.mkdtemp(prefix="stack-bench-quick-"))
    home = args.home or Path(tempfile.mkdtemp(prefix="streamlab-bench-"))
    env = dict(os.environ, STREAMLAB_HOME=str(home))
    for name, port in zip(port_defaults(), free_ports(len(port_defaults())), strict=False):
        env[f"STREAMLAB_PORT_{name.upper()}"] = str(port)
    if args.quick:
        env["STREAMLAB_START_DAGS"] = "0"  # the pipeline, not the figures: no streaming job
    os.environ.update({k: v for k, v in env.items() if k.startswith("STREAMLAB_")})
    results = {
        "bench": "stack",
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "host": {"cpus": os.cpu_count(), "load_at_start": os.getloadavg()[0]},
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "restarts": [],
        "complete": False,
    }
    try:
        say(f"isolated stack in {home}: first up (initdb, format, migrate) ...")
        results["first_up_s"] = round(timed("up", env)[0], 1)
        for i in range(args.restarts):
            say(f"restart {i + 1}/{args.restarts}: down, then up ...")
            timed("down", env)
            whole, out = timed("up", env)
            results["restarts"].append({"healthy_s": healthy_after(out), "up_s": round(whole, 1)})
            say(f"  all healthy in {results['restarts'][-1]['healthy_s']} s; the whole up {whole:.1f} s")
        results["noop_up_s"] = round(timed("up", env)[0], 1)
        say(f"idle {args.idle:.0f} s, then the memory of every process ...")
        time.sleep(args.idle)
        results["idle"], pids = sample(StackConfig.load(home))
        results["idle_stack_rss_mib"] = stack_rss_mib(pids)
        results["complete"] = True
    finally:
        say("down ...")
        try:
            subprocess.run([sys.executable, "-m", "streamlab.stack", "down"], cwd=REPO, env=env,
                           capture_output=True, timeout=300)  # fmt: skip
        except subprocess.TimeoutExpired:
            say("warning: `down` did not end within 300 s")
        results["left_after_down"] = len(stack_pids(str(home.resolve())))
        results["summary"] = summarize_stack(results)
        write_json(args.out / "stack.json", results)
        plot_stack(results["summary"], args.out / "stack.png", stack_title(results))
        say(f"wrote {args.out / 'stack.json'} and {args.out / 'stack.png'}")
        if not args.home and results["left_after_down"] == 0:
            shutil.rmtree(home, ignore_errors=True)  # else kept: its processes still use it
    for line in stack_table(results):
        say(line)
    return 0 if results["left_after_down"] == 0 else 1


def stack_table(results: dict) -> list[str]:
    s = results["summary"]
    lines = [
        f"\nlocal stack ({results['host']['cpus']} cores), isolated",
        f"  first up (initdb, format, migrate):  {results['first_up_s']:6.1f} s",
        f"  up from stopped to all healthy:      {', '.join(f'{h}' for h in s['healthy_s'])} s "
        f"(goal {s['goal_up_s']:g} s: {'met' if s['goal_met'] else 'MISSED'})",
        f"  the whole up (+ topics provisioning): {', '.join(f'{u}' for u in s['up_s'])} s",
        f"  up again while running (no-op):      {results['noop_up_s']:6.1f} s",
        f"\n  idle memory after {results['settings']['idle']:.0f} s:",
        f"  {'part':26}{'processes':>10}{'RSS MiB':>10}{'PSS MiB':>10}",
    ]
    for name in sorted(results["idle"], key=part_rank):
        part = results["idle"][name]
        lines.append(f"  {name:26}{part['processes']:>10}{part['rss_mib']:>10,.0f}{part['pss_mib']:>10,.0f}")
    total = s["idle_total"]
    lines.append(
        f"  {'summed':26}{total['processes']:>10}{total['rss_mib']:>10,.0f}{total['pss_mib']:>10,.0f}"
    )
    stack_rss = results.get("idle_stack_rss_mib")
    lines.append(
        "  the stack's RSS, each page once: " + ("-" if stack_rss is None else f"{stack_rss:,.0f} MiB")
    )
    lines.append(f"\n  processes of the stack left after down: {results['left_after_down']}")
    return lines


if __name__ == "__main__":
    raise SystemExit(main())
