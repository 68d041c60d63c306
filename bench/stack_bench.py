"""Start-up time and idle memory of the local stack (budgets: up from stopped <= 30 s, <= 4 GiB).

    .venv/bin/python bench/stack_bench.py [--idle 60] [--restarts 3] [--home DIR]

Runs an isolated stack (temp state folder, free ports) so a developer's stack is untouched:
1. first `up` (formats storage, migrates Airflow's database),
2. `down`, then `up` again, --restarts times: "from stopped to all healthy", the figure the
   budget is about (every round printed),
3. idle for --idle seconds, then the memory of every process of the stack (service process
   groups and all their descendants): RSS summed (counts shared pages once per process, so it
   overstates) and PSS summed (shares them out: the honest total),
4. `down`, and a check that no process of the stack is left.
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
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import psutil  # noqa: E402

from streamlab.config import StackConfig, free_ports  # noqa: E402
from streamlab.stack.processes import descendants, running_pid, stack_pids  # noqa: E402
from streamlab.stack.registry import port_defaults, services  # noqa: E402


def timed(cmd: str, env: dict[str, str]) -> float:
    return timed_with_output(cmd, env)[0]


def timed_with_output(cmd: str, env: dict[str, str]) -> tuple[float, str]:
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "streamlab.stack", cmd], cwd=REPO, env=env,
                          capture_output=True, text=True)  # fmt: skip
    elapsed = time.monotonic() - start
    if proc.returncode != 0:
        sys.exit(f"`{cmd}` failed:\n{proc.stdout}\n{proc.stderr}")
    return elapsed, proc.stdout


def healthy_after(up_output: str) -> float:
    """`up`'s own figure: start to all services healthy (before it provisions the topics)."""
    return float(re.search(r"all services healthy in ([\d.]+) s", up_output).group(1))


def memory_kib(pid: int) -> tuple[int, int]:
    """(RSS, PSS) in KiB; PSS shares each shared page among the processes that map it."""
    try:
        mem = psutil.Process(pid).memory_full_info()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return 0, 0
    return mem.rss // 1024, mem.pss // 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--idle", type=float, default=60)
    parser.add_argument("--restarts", type=int, default=3)
    parser.add_argument("--home", help="state folder (default: a new temp folder, removed after)")
    args = parser.parse_args()

    home = Path(args.home or tempfile.mkdtemp(prefix="streamlab-bench-"))
    env = dict(os.environ, STREAMLAB_HOME=str(home))
    for name, port in zip(port_defaults(), free_ports(len(port_defaults())), strict=False):
        env[f"STREAMLAB_PORT_{name.upper()}"] = str(port)
    os.environ.update({k: v for k, v in env.items() if k.startswith("STREAMLAB_")})

    try:
        first = timed("up", env)
        agains = []
        for _ in range(args.restarts):
            timed("down", env)
            agains.append(timed_with_output("up", env))
        noop = timed("up", env)
        time.sleep(args.idle)
        cfg = StackConfig.load(home)
        rows = []
        for svc in services(cfg):
            pid = running_pid(cfg, svc.name)
            tree = [pid, *descendants([pid])] if pid else []
            rss = sum(memory_kib(p)[0] for p in tree)
            pss = sum(memory_kib(p)[1] for p in tree)
            rows.append((svc.name, len(tree), rss, pss))
    finally:
        timed("down", env)
    left = stack_pids(str(home.resolve()))

    print(f"\nlocal stack benchmark ({os.cpu_count()} cores), isolated home {home}")
    print(f"  first up (format + migrate):      {first:6.1f} s")
    healthy = [healthy_after(out) for _, out in agains]
    print(
        f"  up from stopped to all healthy:   {max(healthy):6.1f} s at most "
        f"({', '.join(f'{h:.1f}' for h in healthy)})   (budget 30 s)"
    )
    print(
        "  the whole `up` command (+ topics provisioning): " + ", ".join(f"{a:.1f}" for a, _ in agains) + " s"
    )
    print(f"  up again while running (no-op):   {noop:6.1f} s")
    print(f"\n  idle memory after {args.idle:.0f} s:")
    print(f"  {'service':24}{'processes':>10}{'RSS MiB':>10}{'PSS MiB':>10}")
    for name, n, rss, pss in rows:
        print(f"  {name:24}{n:>10}{rss / 1024:>10.0f}{pss / 1024:>10.0f}")
    total_rss = sum(r[2] for r in rows) / 1024
    total_pss = sum(r[3] for r in rows) / 1024
    print(
        f"  {'total':24}{sum(r[1] for r in rows):>10}{total_rss:>10.0f}{total_pss:>10.0f}   (budget 4096 MiB)"
    )
    print(f"\n  processes of the stack left after down: {len(left)}")
    if not args.home:
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
