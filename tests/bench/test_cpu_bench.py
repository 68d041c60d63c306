"""The CPU bench's own parts: thread groups, the share per part between two samples, and reading
a real process's threads from /proc (no stack)."""

from __future__ import annotations

import os
import threading
import time

from bench import cpu_bench


def test_jvm_threads_are_grouped_by_their_names():
    assert cpu_bench.thread_group("Executor task l") == "tasks"  # Linux keeps 15 characters
    assert cpu_bench.thread_group("C2 CompilerThre") == "JIT C2"
    assert cpu_bench.thread_group("C1 CompilerThre") == "JIT C1"
    assert cpu_bench.thread_group("VM Thread") == "GC"
    assert cpu_bench.thread_group("GC Thread#0") == "GC"
    assert cpu_bench.thread_group("dispatcher-even") == "other"
    assert cpu_bench.part_of("command", "C2 CompilerThre", is_jvm=True) == "command: JIT C2"
    assert cpu_bench.part_of("command", "python3", is_jvm=False) == "command"
    assert cpu_bench.part_of("kafka", "C2 CompilerThre", is_jvm=True) == "kafka"


def test_the_share_of_each_part_is_its_ticks_since_the_last_sample():
    t = cpu_bench.TICKS
    before_at = 1000 * t  # the first sample, in ticks since boot
    before = {
        (1, 1): ("kafka", 10 * t, 5),
        (2, 2): ("command: tasks", 0, 900 * t),
        (2, 3): ("command: tasks", t, 900 * t),
        (2, 5): ("command: other", 7 * t, 950 * t),
    }
    after = {
        (1, 1): ("kafka", 10 * t + t // 2, 5),  # half a second of CPU in 1 s: 50 %
        (2, 2): ("command: tasks", 2 * t, 900 * t),
        (2, 3): ("command: tasks", 2 * t, 900 * t),  # 2 s + 1 s over two threads
        (2, 4): ("command: JIT C2", t, 1000 * t + 1),  # born since: all its ticks
        (2, 5): ("command: other", t, 1000 * t + 2),  # thread id 5 reused by a newer thread
        (3, 6): ("postgres", 500 * t, 10),  # unreadable at the first sample: its share is unknown
    }
    shares = cpu_bench.cpu_by_part(before, after, 1.0, before_at)
    assert shares == {
        "kafka": 50.0, "command: tasks": 300.0, "command: JIT C2": 100.0, "command: other": 100.0,
        "postgres": 0.0,
    }  # fmt: skip


def test_a_busy_thread_of_a_real_process_is_read_from_proc():
    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set():
            pass

    worker = threading.Thread(target=spin, name="busy")
    worker.start()
    try:
        first = cpu_bench.ticks(os.getpid())
        time.sleep(0.5)
        second = cpu_bench.ticks(os.getpid())
    finally:
        stop.set()
        worker.join()
    assert worker.native_id in second
    assert second[worker.native_id][1] > first.get(worker.native_id, ("", 0, 0))[1]
    assert second[worker.native_id][2] <= cpu_bench.uptime_ticks()  # started before now
    assert cpu_bench.ticks(2**22 + 12345) == {}  # no such process: nothing, no error
    total, idle = cpu_bench.machine_ticks()
    assert total > idle >= 0
