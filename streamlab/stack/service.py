"""What a service of the stack declares, and the small tools every service module uses.

A service module (kafka.py, namenode.py, ...) declares, at module level:

    PORTS: dict[str, tuple[int, str]]            port key -> (default port, what listens there)
    def services(cfg) -> list[Service]            its processes in this profile (may be none)
    def check_state(cfg) -> None                  optional: refuse (StackError, with the fix) a state
                                                  folder this version cannot use; runs before `up` changes anything
    def write_config(cfg) -> None                 optional: config files, rewritten on every `up`
    def format_storage(cfg, java) -> None         optional: one-time formatting, idempotent

and is listed once in `registry.MODULES`. `Service.layer` alone orders the stack: `up` starts
layers in ascending order, `down` stops them in descending order, one layer at a time.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path

from streamlab.config import StackConfig

Health = tuple[bool, str]  # (healthy, what the check saw)


class StackError(Exception):
    """A problem the user can act on; printed without a stack trace."""


class Layer(IntEnum):
    """Start order (ascending) and stop order (descending). Services of one layer stop together:
    KRaft brokers stopped one by one lose their quorum and hang in controlled shutdown."""

    POSTGRES = 0  # Airflow writes to it until Airflow stops
    KAFKA = 1
    NAMENODE = 2
    DATANODE = 3
    SPARK = 4
    AIRFLOW = 5  # stops first: its tasks may be running Spark jobs


@dataclass(frozen=True)
class Service:
    name: str  # process name: pid file run/<name>.pid, log log/<name>.log
    layer: Layer
    ports: tuple[str, ...]  # keys of StackConfig.ports it listens on (declared in its module's PORTS)
    command: Callable[[StackConfig, str], list[str]]  # (cfg, java binary) -> argv
    health: Callable[[StackConfig], Health]
    # Services that must be healthy before this one starts, and a step to run once between
    # (Airflow: PostgreSQL, then the schema migration). A running service whose dependency has to
    # be started again is restarted too: it lost its connections.
    needs: tuple[str, ...] = ()
    prepare: Callable[[StackConfig], None] | None = None
    before_start: Callable[[StackConfig], None] | None = None  # e.g. clean up after a SIGKILL
    run_as: Callable[[], object] | None = None  # pwd entry of another account, or None
    stop_signal: int = signal.SIGTERM
    signal_group: bool = True  # the stop signal goes to its whole process group
    stop_timeout: float = 20.0


def say(msg: str) -> None:
    print(f"[streamlab] {msg}", flush=True)


def http_json(url: str, timeout: float = 3.0):
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return json.loads(resp.read().decode())


def tail(path: Path, lines: int = 30) -> str:
    try:
        content = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log yet)"
    return "\n".join(content[-lines:])


def as_user(user) -> dict:
    """Popen arguments that run a child as `user` (a pwd entry), without root's groups."""
    if user is None:
        return {}
    return {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}


def run_step(cfg: StackConfig, name: str, cmd: list[str], timeout: float = 120, user=None) -> None:
    """A one-shot setup command (format, migrate) with its output kept in log/<name>.log."""
    log = cfg.log_dir / f"{name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        out.write(f"\n==== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(cmd)}\n".encode())
        out.flush()
        try:
            rc = subprocess.run(
                cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                cwd=cfg.home, env=cfg.env(), timeout=timeout, **as_user(user),
            ).returncode  # fmt: skip
        except subprocess.TimeoutExpired:
            rc = "timeout"
    if rc != 0:
        raise StackError(f"`{name}` failed ({rc}). Last lines of {log}:\n{tail(log)}")
