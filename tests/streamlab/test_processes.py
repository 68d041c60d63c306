"""Pid files, process trees and port owners (streamlab/stack/processes.py), on real processes."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import psutil
import pytest

from streamlab.config import HOST, StackConfig
from streamlab.stack import processes


@pytest.fixture
def cfg(tmp_path):
    c = StackConfig(home=tmp_path / "var", ports={})
    c.run_dir.mkdir(parents=True)
    c.log_dir.mkdir(parents=True)
    return c


def test_a_spawned_service_is_found_by_its_pid_file_and_stopped_with_its_children(cfg):
    code = "import subprocess, time; subprocess.Popen(['sleep', '60']); time.sleep(60)"
    pid = processes.spawn(cfg, "sleeper", [sys.executable, "-c", code], dict(os.environ), {})
    try:
        assert processes.running_pid(cfg, "sleeper") == pid
        for _ in range(50):
            kids = processes.descendants([pid])
            if kids:
                break
            time.sleep(0.1)
        assert len(kids) == 1 and psutil.Process(kids[0]).name() == "sleep"
        assert sorted(processes.in_group(pid)) == sorted([pid, *kids])  # its own group
        assert processes.matching("time.sleep(60)") == [pid]
        processes.signal_group(pid, 15)
        processes.wait_gone([pid, *kids], 10)
        assert not processes.alive(kids[0])
    finally:
        processes.signal_group(pid, 9)
    assert processes.running_pid(cfg, "sleeper") is None


def test_a_reused_pid_is_not_taken_for_the_service(cfg):
    stamp = int(processes.start_stamp(os.getpid()))
    processes.pid_file(cfg, "old").write_text(f"{os.getpid()} {stamp - 500}")  # this pid, started earlier
    assert processes.running_pid(cfg, "old") is None
    processes.pid_file(cfg, "garbage").write_text("not a pid file")
    assert processes.running_pid(cfg, "garbage") is None


def test_the_stamp_is_the_kernels_start_time_since_boot(cfg):
    """Pid files of earlier versions hold field 22 of /proc/<pid>/stat; a wall-clock time would
    stop matching after a clock step (NTP, a resumed VM) and lose every running service."""
    with open(f"/proc/{os.getpid()}/stat") as f:
        ticks = f.read().rsplit(") ", 1)[1].split()[19]
    assert abs(int(processes.start_stamp(os.getpid())) - int(ticks)) <= 1
    processes.pid_file(cfg, "me").write_text(f"{os.getpid()} {ticks}")
    assert processes.running_pid(cfg, "me") == os.getpid()


def test_a_zombie_is_not_alive():
    child = subprocess.Popen(["true"])
    try:
        for _ in range(100):
            if processes.zombie(child.pid):
                break
            time.sleep(0.05)
        assert processes.zombie(child.pid) and not processes.alive(child.pid)
    finally:
        child.wait()
    assert not processes.alive(child.pid) and not processes.zombie(child.pid)


def test_the_owner_of_a_taken_port_is_named():
    with socket.socket() as s:
        s.bind((HOST, 0))
        s.listen()
        port = s.getsockname()[1]
        assert not processes.port_free(port)
        assert processes.port_owner(port).startswith(f"pid {os.getpid()} (")
    assert processes.port_owner(port) is None


def test_the_stack_marker_finds_escaped_processes_but_not_this_one():
    marker = f"/tmp/marker-{os.getpid()}"
    env = dict(os.environ, STREAMLAB_STACK_ID=marker)
    child = subprocess.Popen(["sleep", "30"], env=env, start_new_session=True)
    try:
        assert processes.stack_pids(marker) == [child.pid]
    finally:
        child.kill()
        child.wait()
    assert processes.stack_pids(marker) == []
