"""Processes of the stack, through psutil: pid files, liveness, trees, signals, port owners.

Every server runs in its own process group (one signal reaches all its children), with a pid
file `<home>/run/<name>.pid` holding "<pid> <start time>": the start time tells a reused pid
apart from ours. The environment marker STREAMLAB_STACK_ID=<home> finds the processes that left
their group (a Spark driver whose Airflow task died).
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time

import psutil

from streamlab.config import HOST, StackConfig


def alive(pid: int) -> bool:
    """True for a running process; a zombie (exited, not yet reaped) is not alive."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True


def zombie(pid: int) -> bool:
    """True for a process that exited and that its parent has not reaped yet."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def parent(pid: int) -> int | None:
    try:
        return psutil.Process(pid).ppid()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def start_stamp(pid: int) -> str | None:
    """When a process started, in clock ticks since boot: a clock step (NTP, a resumed VM) does
    not move it, unlike a wall-clock start time."""
    try:
        started = psutil.Process(pid).create_time()  # boot time + ticks, both on the wall clock
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None
    return str(round((started - psutil.boot_time()) * os.sysconf("SC_CLK_TCK")))


def _same_start(pid: int, stamp: str) -> bool:
    now = start_stamp(pid)
    return now is not None and abs(int(now) - int(stamp)) <= 1


def pid_file(cfg: StackConfig, name: str):
    return cfg.run_dir / f"{name}.pid"


def running_pid(cfg: StackConfig, name: str) -> int | None:
    """Pid of a service of THIS stack, or None (a stale pid file is ignored). The environment
    marker cannot be used here: Airflow's setproctitle overwrites /proc/<pid>/environ."""
    try:
        pid_text, stamp = pid_file(cfg, name).read_text().split()
        pid = int(pid_text)
    except (OSError, ValueError):
        return None
    try:
        if alive(pid) and _same_start(pid, stamp):
            return pid
    except ValueError:
        pass
    return None


def spawn(cfg: StackConfig, name: str, cmd: list[str], env: dict[str, str], popen_user: dict) -> int:
    """Start a server in its own process group, output appended to log/<name>.log, pid file written."""
    log = cfg.log_dir / f"{name}.log"
    with open(log, "ab") as out:
        out.write(f"\n==== {time.strftime('%Y-%m-%d %H:%M:%S')} starting: {' '.join(cmd)}\n".encode())
        out.flush()
        proc = subprocess.Popen(
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=cfg.home,
            env=env,
            start_new_session=True,  # own process group: one signal reaches all its children
            **popen_user,
        )
    pid_file(cfg, name).write_text(f"{proc.pid} {start_stamp(proc.pid)}")
    return proc.pid


def descendants(pids: list[int]) -> list[int]:
    """All live descendants of `pids` (children may have left the process group)."""
    found: list[int] = []
    for pid in pids:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            found += [child.pid for child in psutil.Process(pid).children(recursive=True)]
    return found


def stack_pids(marker: str) -> list[int]:
    """Every live process carrying this stack's marker, except this process and its ancestors."""
    me = psutil.Process()
    skip = {me.pid, *(p.pid for p in me.parents())}
    wanted = f"STREAMLAB_STACK_ID={marker}"
    found = []
    for proc in psutil.process_iter():
        if proc.pid in skip:
            continue
        try:
            environ = proc.environ()
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess, OSError):
            continue
        if f"STREAMLAB_STACK_ID={environ.get('STREAMLAB_STACK_ID')}" == wanted and alive(proc.pid):
            found.append(proc.pid)
    return found


def command_line(pid: int) -> str:
    try:
        return " ".join(psutil.Process(pid).cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return ""


def matching(text: str) -> list[int]:
    """Live processes (not this one) whose command line contains `text`."""
    return [
        proc.pid
        for proc in psutil.process_iter()
        if proc.pid != os.getpid() and text in command_line(proc.pid) and alive(proc.pid)
    ]


def in_group(pgid: int) -> list[int]:
    """Live members of a process group."""
    found = []
    for proc in psutil.process_iter():
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if os.getpgid(proc.pid) == pgid and alive(proc.pid):
                found.append(proc.pid)
    return found


def signal_group(pid: int, sig: int) -> None:
    """`sig` to the process group led by `pid`, and to `pid` itself (it may have left its group)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def wait_gone(pids: list[int], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.2)


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


def port_owner(port: int) -> str | None:
    """'pid 123 (java ...)' listening on a TCP port; None when nothing listens."""
    try:
        conns = psutil.net_connections(kind="tcp")
    except psutil.AccessDenied:
        return "another process (not visible to this user)"
    pids = {c.pid for c in conns if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port}
    if not pids:
        return None
    for pid in sorted(p for p in pids if p):
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            return f"pid {pid} ({' '.join(psutil.Process(pid).cmdline())[:120].strip()})"
    return "another process (not visible to this user)"
