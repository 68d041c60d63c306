"""AirflowClient.stop_dag against a fake REST API whose scheduler races the pause."""

from __future__ import annotations

import pytest

from streamlab.airflow_client import AirflowClient


class FakeAirflow(AirflowClient):
    """Just enough of `/api/v2` for stop_dag. `late_runs[i]` runs appear after the i-th listing
    of active runs, as a scheduler loop that read the DAG before the pause creates a run after it."""

    def __init__(self, active: list[str], late_runs: dict[int, list[str]]):
        self.paused = False
        self.states = {run_id: "running" for run_id in active}
        self.late_runs = late_runs
        self.listings = 0
        self.now = 0.0

    def _call(self, method, path, body=None, auth=True):
        path = path.removeprefix("/api/v2")
        if method == "PATCH" and path == "/dags/d":
            self.paused = body["is_paused"]
            return {}
        if method == "PATCH" and path.startswith("/dags/d/dagRuns/"):
            self.states[path.rsplit("/", 1)[1]] = body["state"]
            return {}
        if method == "GET" and path.startswith("/dags/d/dagRuns?"):
            state = dict(kv.split("=") for kv in path.split("?")[1].split("&"))["state"]
            runs = [{"dag_run_id": r} for r, s in self.states.items() if s == state]
            if state == "queued":  # one listing = running + queued
                for run_id in self.late_runs.get(self.listings, []):
                    self.states[run_id] = "queued"
                self.listings += 1
            return {"dag_runs": runs}
        raise AssertionError(f"unexpected call {method} {path}")

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_stop_dag_also_fails_a_run_the_scheduler_creates_just_after_the_pause():
    api = FakeAirflow(active=["r1"], late_runs={0: ["r2"]})
    ended = api.stop_dag("d", quiet_s=10, clock=lambda: api.now, sleep=api.sleep)
    assert api.paused
    assert ended == ["r1", "r2"]
    assert set(api.states.values()) == {"failed"}
    assert api.now >= 10  # waited out the quiet period after the last run it failed


def test_stop_dag_with_nothing_running_only_pauses():
    api = FakeAirflow(active=[], late_runs={})
    assert api.stop_dag("d", quiet_s=3, clock=lambda: api.now, sleep=api.sleep) == []
    assert api.paused


def test_stop_dag_gives_up_when_runs_keep_starting():
    api = FakeAirflow(active=[], late_runs={i: [f"r{i}"] for i in range(1000)})
    with pytest.raises(RuntimeError, match="runs kept starting"):
        api.stop_dag("d", quiet_s=10, timeout=60, clock=lambda: api.now, sleep=api.sleep)
