"""A minimal client of Airflow 3's REST API (`/api/v2`), authenticated as the stack's admin."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable

from streamlab.config import StackConfig

# How long one request may take: a busy api-server on 2 cores shared with Spark jobs. A POST
# that timed out may still have created its run, so the error says so (see streamlab.stack.platform_dags.rest_api_error).
REQUEST_TIMEOUT_S = 60


class AirflowClient:
    def __init__(self, cfg: StackConfig, timeout: float = REQUEST_TIMEOUT_S):
        self.base = cfg.airflow_url
        self.timeout = timeout
        user, password = cfg.admin_credentials()
        token = self._call("POST", "/auth/token", {"username": user, "password": password}, auth=False)
        self.token = token["access_token"]

    def _call(self, method: str, path: str, body: dict | None = None, auth: bool = True):
        headers = {"Content-Type": "application/json"}
        if auth:
            headers["Authorization"] = f"Bearer {self.token}"
        req = urllib.request.Request(
            self.base + path,
            data=None if body is None else json.dumps(body).encode(),
            headers=headers,
            method=method,
        )
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return json.loads(resp.read() or b"null")
        except (TimeoutError, urllib.error.URLError) as exc:
            # A read timeout comes bare, a connect timeout wrapped in URLError.
            if isinstance(exc, TimeoutError) or isinstance(exc.reason, TimeoutError):
                raise TimeoutError(f"{method} {path}: no answer within {self.timeout:g} s") from None
            raise

    def get(self, path: str, **params):
        query = f"?{urllib.parse.urlencode(params)}" if params else ""  # a date's "+" must be encoded
        return self._call("GET", f"/api/v2{path}{query}")

    def post(self, path: str, body: dict):
        return self._call("POST", f"/api/v2{path}", body)

    def patch(self, path: str, body: dict):
        return self._call("PATCH", f"/api/v2{path}", body)

    def dag(self, dag_id: str) -> dict | None:
        try:
            return self.get(f"/dags/{dag_id}")
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            raise

    def runs(self, dag_id: str, **params) -> list[dict]:
        return self.get(f"/dags/{dag_id}/dagRuns", **{"order_by": "-start_date", **params})["dag_runs"]

    def trigger(self, dag_id: str, conf: dict | None = None) -> dict:
        return self.post(f"/dags/{dag_id}/dagRuns", {"logical_date": None, "conf": conf or {}})

    def run_state(self, dag_id: str, run_id: str) -> str:
        return self.get(f"/dags/{dag_id}/dagRuns/{run_id}")["state"]

    def set_paused(self, dag_id: str, paused: bool) -> None:
        self.patch(f"/dags/{dag_id}", {"is_paused": paused})

    def active_runs(self, dag_id: str) -> list[dict]:
        return self.runs(dag_id, state="running") + self.runs(dag_id, state="queued")

    def mark_run_failed(self, dag_id: str, run_id: str) -> None:
        self.patch(f"/dags/{dag_id}/dagRuns/{run_id}", {"state": "failed"})

    def stop_dag(
        self,
        dag_id: str,
        quiet_s: float = 10.0,
        timeout: float = 180.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> list[str]:
        """Pause `dag_id` and fail its running and queued runs; returns the ids of the runs ended.

        Pausing does not reach a scheduler loop that has already read the DAG as unpaused: it can
        still create one more run just after the pause (seen with `@continuous`, whose next run is
        created as soon as the previous one ends). So runs are failed until none has shown up for
        `quiet_s` seconds. Failing a run makes its running tasks' supervisors kill their process
        groups within a few seconds (the task heartbeat).
        """
        self.set_paused(dag_id, True)
        ended: list[str] = []
        deadline = clock() + timeout
        quiet_since = clock()
        while True:
            active = self.active_runs(dag_id)
            for run in active:
                self.mark_run_failed(dag_id, run["dag_run_id"])
                ended.append(run["dag_run_id"])
            now = clock()
            if active:
                quiet_since = now
            elif now - quiet_since >= quiet_s:
                return ended
            if now > deadline:
                raise RuntimeError(
                    f"{dag_id}: runs kept starting for {timeout:.0f} s although the DAG is paused: {ended}"
                )
            sleep(1.0)

    def give_slot(
        self,
        dag_id: str,
        run_id: str,
        timeout: float = 180.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> list[str]:
        """Wait until the queued run `run_id` runs, failing the scheduled runs that take the DAG's
        single run slot first; returns the ids of the runs failed.

        With `max_active_runs=1` and `@continuous`, unpausing lets the scheduler create its own run,
        which can start before a run triggered while the DAG was paused (seen in CI): a streaming
        run never ends, so the triggered one would wait forever.
        """
        failed: list[str] = []
        deadline = clock() + timeout
        while True:
            state = self.run_state(dag_id, run_id)
            if state == "running":
                return failed
            if state not in ("queued", None):
                raise RuntimeError(f"{dag_id} run {run_id} is {state}: it did not start")
            for run in self.active_runs(dag_id):
                if run["dag_run_id"] != run_id and run.get("run_type") == "scheduled":
                    self.mark_run_failed(dag_id, run["dag_run_id"])
                    failed.append(run["dag_run_id"])
            if clock() > deadline:
                raise RuntimeError(f"{dag_id} run {run_id} still {state} after {timeout:.0f} s")
            sleep(1.0)
