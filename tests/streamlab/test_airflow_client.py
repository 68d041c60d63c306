"""AirflowClient: stop_dag against a fake REST API whose scheduler races the pause; the errors a
slow or absent api-server gives."""

from __future__ import annotations

from pathlib import Path

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


@pytest.fixture
def held_api():
    """An api-server that answers /auth/token at once and holds every GET, as a busy one does."""
    import http.server
    import json
    import threading

    release = threading.Event()

    class Held(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            body = json.dumps({"access_token": "t"}).encode()
            self.send_response(201)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            release.wait(10)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Held)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield stack_cfg(f"http://127.0.0.1:{server.server_port}")
    release.set()
    server.shutdown()


def stack_cfg(airflow_url: str):
    from types import SimpleNamespace

    return SimpleNamespace(
        airflow_url=airflow_url, admin_credentials=lambda: ("admin", "pw"), log_dir=Path("/state/log")
    )


def test_a_request_past_the_timeout_names_the_call_and_the_wait(held_api):
    from streamlab.stack.platform_dags import rest_api_error

    client = AirflowClient(held_api, timeout=0.5)
    with pytest.raises(TimeoutError, match=r"^GET /api/v2/dags/d: no answer within 0.5 s$") as timed_out:
        client.dag("d")
    message = str(rest_api_error(held_api, timed_out.value))
    assert "did not answer in time (GET /api/v2/dags/d: no answer within 0.5 s)" in message
    assert "/state/log/airflow-api-server.log" in message


def test_stream_stop_with_the_stack_down_says_to_check_it():
    import socket

    from streamlab.stack.platform_dags import stream
    from streamlab.stack.service import StackError

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(
        StackError, match=r"could not talk to Airflow's REST API .*Connection refused.*make status"
    ):
        stream(stack_cfg(f"http://127.0.0.1:{port}"), "stop")


class SlotAirflow(AirflowClient):
    """A DAG with one run slot: on each listing, the scheduler starts the oldest queued run if the
    slot is free; `scheduled_first` makes it create and start a continuous run before ours."""

    def __init__(self, scheduled_first: int):
        self.runs_ = {"mine": {"state": "queued", "run_type": "manual"}}
        self.scheduled_first = scheduled_first
        self.now = 0.0

    def _call(self, method, path, body=None, auth=True):
        path = path.removeprefix("/api/v2")
        if method == "PATCH" and path.startswith("/dags/d/dagRuns/"):
            self.runs_[path.rsplit("/", 1)[1]]["state"] = body["state"]
            return {}
        if method == "GET" and path.startswith("/dags/d/dagRuns/"):
            return {"state": self.runs_[path.rsplit("/", 1)[1]]["state"]}
        if method == "GET" and path.startswith("/dags/d/dagRuns?"):
            state = dict(kv.split("=") for kv in path.split("?")[1].split("&"))["state"]
            if state == "running":
                self._schedule()
            return {
                "dag_runs": [
                    {"dag_run_id": r, "run_type": v["run_type"]}
                    for r, v in self.runs_.items()
                    if v["state"] == state
                ]
            }
        raise AssertionError(f"unexpected call {method} {path}")

    def _schedule(self):
        if any(v["state"] == "running" for v in self.runs_.values()):
            return
        if self.scheduled_first:
            self.scheduled_first -= 1
            self.runs_[f"scheduled{self.scheduled_first}"] = {"state": "running", "run_type": "scheduled"}
        else:
            self.runs_["mine"]["state"] = "running"

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_give_slot_fails_the_continuous_runs_that_start_before_the_triggered_one():
    api = SlotAirflow(scheduled_first=2)
    failed = api.give_slot("d", "mine", clock=lambda: api.now, sleep=api.sleep)
    assert failed == ["scheduled1", "scheduled0"]
    assert api.runs_["mine"]["state"] == "running"
    assert {v["state"] for r, v in api.runs_.items() if r != "mine"} == {"failed"}


def test_give_slot_names_a_run_that_never_gets_it():
    api = SlotAirflow(scheduled_first=10**6)
    with pytest.raises(RuntimeError, match="run mine still queued after 30 s"):
        api.give_slot("d", "mine", timeout=30, clock=lambda: api.now, sleep=api.sleep)
