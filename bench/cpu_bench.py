"""Where the CPU goes while a command runs: the stack's services and the command, once a second,
the command's JVM threads grouped (Spark task threads, JIT compilers, garbage collector, other).

    .venv/bin/python bench/cpu_bench.py [--out cpu.json] -- bin/spark-submit \\
        bench/landing_write_paths.py --topic <5M-record topic> --paths stager --rounds 3

Against the running local stack (`make up`; or STREAMLAB_HOME=... for another one). Every
--interval s: the CPU each part used since the last sample, in % of one core (the machine has
`os.cpu_count()` cores: 100 % per core), from /proc (utime + stime of every process and thread);
the machine's busy share from /proc/stat. At the end, the mean of each part over the seconds the
command ran, and the command's output lines (e.g. a bench's rounds) with the second they came at.
Used in docs/landing.md ("Why 0.46 and not 0.7") to show the landing's cores are busy, and with what.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.common import say  # noqa: E402
from bench.memory_bench import stack_parts  # noqa: E402
from streamlab.config import StackConfig  # noqa: E402
from streamlab.stack.processes import descendants  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")
COMMAND = "command"


def thread_group(name: str) -> str:
    """A JVM thread's group by its name (Linux keeps the first 15 characters)."""
    if name.startswith("Executor task"):
        return "tasks"
    if name.startswith(("C2 CompilerThre", "C1 CompilerThre")):
        return "JIT " + name[:2]
    if "GC" in name or name.startswith(("VM Thread", "G1 ")):
        return "GC"
    return "other"


def ticks(pid: int) -> dict[int, tuple[str, int, int]]:
    """tid -> (thread name, CPU ticks used so far, its start in ticks since boot) of every thread
    of `pid` ({} if it ended)."""
    out = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        out[int(tid)] = (name, int(fields[11]) + int(fields[12]), int(fields[19]))  # utime + stime, starttime
    return out


def machine_ticks() -> tuple[int, int]:
    """(all, idle + iowait) CPU ticks of the machine so far (guest time is inside user time)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return sum(values), values[3] + values[4]


def uptime_ticks() -> float:
    return float(Path("/proc/uptime").read_text().split()[0]) * TICKS


def owners(cfg: StackConfig, command_pid: int) -> dict[int, str]:
    """pid -> part: the command's processes (its JVM's threads grouped apart), the stack's."""
    found = {p: COMMAND for p in [command_pid, *descendants([command_pid])]}
    for p, part in stack_parts(cfg).items():
        found.setdefault(p, part)
    return found


def part_of(owner: str, thread_name: str, is_jvm: bool) -> str:
    return f"{COMMAND}: {thread_group(thread_name)}" if owner == COMMAND and is_jvm else owner


def cpu_by_part(before: dict, after: dict, seconds: float, before_at: float) -> dict[str, float]:
    """% of one core per part between two samples ({(pid, tid): (part, ticks, start)}), the
    first taken `before_at` ticks after boot. A thread born since counts all its ticks; one the
    first sample missed (unreadable then) counts none: its share of the interval is unknown. A
    thread that ended between the samples is not seen: its last ticks are lost."""
    parts: dict[str, float] = {}
    for key, (part, used, born) in after.items():
        old = before.get(key)
        if old is not None and old[2] == born:
            done = used - old[1]
        else:  # new, or a thread id reused by a newer thread
            done = used if born >= before_at else 0
        parts[part] = parts.get(part, 0.0) + 100 * max(done, 0) / TICKS / seconds
    return parts


def snapshot(cfg: StackConfig, command_pid: int) -> tuple[dict[tuple[int, int], tuple[str, int, int]], float]:
    """{(pid, tid): (part, ticks, start)} of every thread of the stack and the command; when."""
    at = uptime_ticks()
    snap = {}
    for pid, owner in owners(cfg, command_pid).items():
        threads = ticks(pid)
        is_jvm = any(thread_group(name).startswith("JIT") for name, _, _ in threads.values())
        for tid, (name, used, born) in threads.items():
            snap[(pid, tid)] = (part_of(owner, name, is_jvm), used, born)
    return snap, at


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--interval", type=float, default=1.0)
    p.add_argument("--out", type=Path, help="write the samples and the means as JSON here")
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- the command to run")
    args = p.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        p.error("give the command after --")
    cfg = StackConfig.load()
    proc = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    started = time.monotonic()
    lines: list[tuple[float, str]] = []

    def read() -> None:
        for line in proc.stdout:
            lines.append((round(time.monotonic() - started, 1), line.rstrip()))
            if " INFO " not in line and " WARN " not in line:  # the JVM's log lines: kept, not shown
                say(f"  [{lines[-1][0]:6.1f} s] {lines[-1][1]}")

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    samples = []
    (before, before_at), machine_before, t_before = snapshot(cfg, proc.pid), machine_ticks(), time.monotonic()
    while proc.poll() is None:
        time.sleep(args.interval)
        (after, after_at), machine_after, t_after = snapshot(cfg, proc.pid), machine_ticks(), time.monotonic()
        ended = proc.poll() is not None  # then the command's last ticks were lost with its threads
        parts = cpu_by_part(before, after, t_after - t_before, before_at)
        total, idle = (a - b for a, b in zip(machine_after, machine_before, strict=True))
        busy = 100 * (total - idle) / total if total else 0.0
        samples.append({"s": round(t_after - started, 1), "busy_pct": round(busy, 1), "command_ended": ended,
                        "parts": {k: round(v, 2) for k, v in sorted(parts.items()) if v > 0}})  # fmt: skip
        top = sorted(parts.items(), key=lambda kv: -kv[1])[:7]
        say(
            f"{samples[-1]['s']:6.1f} s  machine {busy:5.1f} % busy  "
            + "  ".join(f"{k} {v:.0f}" for k, v in top)
        )
        before, before_at, machine_before, t_before = after, after_at, machine_after, t_after
    reader.join(timeout=5)
    counted = [s for s in samples if not s["command_ended"]] or samples
    means: dict[str, float] = {}
    for s in counted:
        for k, v in s["parts"].items():
            means[k] = means.get(k, 0.0) + v / len(counted)
    say(f"\nmean over {len(counted)} samples while it ran, % of one core ({os.cpu_count()} cores):")
    for k, v in sorted(means.items(), key=lambda kv: -kv[1]):
        say(f"  {k:28} {v:6.1f}")
    if args.out:
        out = {"command": command, "cores": os.cpu_count(), "exit_code": proc.returncode,
               "samples": samples, "means": {k: round(v, 1) for k, v in means.items()}, "lines": lines}  # fmt: skip
        args.out.write_text(json.dumps(out, indent=1))
        say(f"wrote {args.out}")
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
