"""A deadline alert fires for a landing run held past its deadline (real stack, README "Freshness alerts").

The landing DAG declares its deadline from STREAMLAB_LANDING_DEADLINE_MINUTES of the DAG processor,
read at parse. The isolated stack of the `stack` fixture (tests/conftest.py) is started with a
1-minute deadline. The whole test stack has it: a fired deadline only runs the callback in the triggerer, it never fails a
run, so the other tests' landings are not disturbed (their deadlines fire into the triggerer's log).
Set the variable yourself to try another value; 0 declares no deadline, and this test then fails.

The held run: the DAG is paused and a run triggered, so it stays queued past its deadline (the
scheduler starts no run of a paused DAG). The scheduler compares deadlines with the clock in every
loop (about once a second), marks the missed one and queues its callback; the triggerer runs it.
Observed independently of the callback's own claims:
- the deadline row of the run, through the REST API the UI reads (`missed`), was created at
  queued_at + the declared interval;
- the callback row in the metadata database (PostgreSQL of the stack): state `success`, and its
  output is the alert line;
- that line in the triggerer's log (`<home>/log/airflow-triggerer.log`), naming the DAG, the run,
  the deadline and how late.
Afterwards the run is deleted and the DAG's paused state restored.

Against the developer's stack (STREAMLAB_TEST_STACK=reuse) the test is skipped when the stack's
landing deadline is longer than MAX_DEADLINE_S (the default is 30 minutes).
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from datetime import datetime, timedelta

import pytest

from streamlab import alerts
from streamlab.airflow_client import AirflowClient
from streamlab.stack import postgres

pytestmark = pytest.mark.integration

DAG_ID = "kafka_to_hdfs_landing"
MAX_DEADLINE_S = 300  # a longer deadline would make the wait too long: skipped (reuse only)
FIRE_SLACK_S = 240  # deadline passed -> marked missed -> callback run: seconds on a busy stack


def ui_get(af: AirflowClient, path: str, **params):
    """GET on the UI's API (`/ui`, same login as /api/v2): the deadline endpoints live there."""
    query = f"?{urllib.parse.urlencode(params)}" if params else ""
    req = urllib.request.Request(
        f"{af.base}/ui{path}{query}", headers={"Authorization": f"Bearer {af.token}"}
    )
    with urllib.request.urlopen(req, timeout=af.timeout) as resp:
        return json.loads(resp.read())


def delete_run(af: AirflowClient, run_id: str) -> None:
    req = urllib.request.Request(
        f"{af.base}/api/v2/dags/{DAG_ID}/dagRuns/{run_id}",
        headers={"Authorization": f"Bearer {af.token}"},
        method="DELETE",
    )
    try:
        urllib.request.urlopen(req, timeout=af.timeout).close()
    except urllib.error.HTTPError as exc:
        if exc.code != 404:
            raise


def wait_for(what: str, check, timeout: float, every: float = 2.0):
    """`check()` until it returns something truthy; fails naming `what` and the last value."""
    end = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"{what}: not within {timeout:.0f} s (last: {value!r})")
        time.sleep(every)


def parse_ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def callback_row(stack, deadline_id: str) -> tuple[str, str | None] | None:
    conn = postgres.connect(stack, stack.secrets()["postgres_password"], timeout=10)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT c.state, c.output FROM deadline d JOIN callback c ON c.id = d.callback_id WHERE d.id = %s",
                (deadline_id,),
            )
            return cur.fetchone()
    finally:
        conn.close()


def triggerer_lines(stack, run_id: str) -> list[str]:
    """The callback's own log lines about `run_id` (logger streamlab.alerts); the triggerer's
    "Trigger fired event" line that quotes the callback's result is not one of them."""
    path = stack.log_dir / "airflow-triggerer.log"
    if not path.exists():
        return []
    head = f"] {alerts.MARKER}: DAG {DAG_ID} run {run_id} "
    with open(path, errors="replace") as f:
        return [line for line in f if head in line and "[streamlab.alerts]" in line]


@pytest.mark.timeout(1200)
def test_a_landing_run_held_past_its_deadline_fires_the_alert(stack):
    af = AirflowClient(stack)
    wait_for(f"DAG {DAG_ID} parsed", lambda: af.dag(DAG_ID), timeout=300, every=5)

    declared = ui_get(af, f"/dags/{DAG_ID}/deadlineAlerts")["deadline_alerts"]
    queued_at_alerts = [a for a in declared if a["reference_type"] == "DagRunQueuedAtDeadline"]
    assert queued_at_alerts, f"{DAG_ID} declares no deadline from queued_at: {declared}"
    [alert] = queued_at_alerts
    interval = timedelta(seconds=alert["interval"])
    if interval.total_seconds() > MAX_DEADLINE_S:
        why = f"the stack's landing deadline is {interval}: start it with {alerts.LANDING_DEADLINE_ENV}=1"
        if os.environ.get("STREAMLAB_TEST_STACK") == "reuse":
            pytest.skip(why)
        pytest.fail(why + " (tests/conftest.py sets it for the isolated stack)")

    was_paused = af.dag(DAG_ID)["is_paused"]
    run_id = f"deadline-held-{uuid.uuid4().hex[:8]}"
    af.set_paused(DAG_ID, True)  # a paused DAG's queued runs are not started: the run is held
    try:
        run = af.post(f"/dags/{DAG_ID}/dagRuns", {"dag_run_id": run_id, "logical_date": None, "conf": {}})
        assert run["state"] == "queued", run
        queued_at = parse_ts(run["queued_at"])

        # The deadline row exists from the run's creation: queued_at + the declared interval.
        [row] = ui_get(af, f"/dags/{DAG_ID}/dagRuns/{run_id}/deadlines")["deadlines"]
        assert parse_ts(row["deadline_time"]) == queued_at + interval, (row, run["queued_at"], interval)
        assert row["missed"] is False

        # Bounded wait: the deadline, then the scheduler marks it missed and queues the callback.
        timeout = interval.total_seconds() + FIRE_SLACK_S
        [row] = wait_for(
            "the scheduler marks the deadline missed",
            lambda: [
                d
                for d in ui_get(af, f"/dags/{DAG_ID}/dagRuns/{run_id}/deadlines")["deadlines"]
                if d["missed"]
            ],
            timeout=timeout,
        )
        assert af.run_state(DAG_ID, run_id) == "queued", "the run was meant to be held, not started"

        # The triggerer ran the callback: the callback row says so, with the alert line as output.
        state, output = wait_for(
            "the triggerer runs the callback",
            lambda: (r := callback_row(stack, row["id"])) and r[0] in ("success", "failed") and r,
            timeout=FIRE_SLACK_S,
        )
        assert state == "success", output
        deadline_iso = alerts._iso(parse_ts(row["deadline_time"]))
        assert output.startswith(f"{alerts.MARKER}: DAG {DAG_ID} run {run_id} (manual, state queued): ")
        assert f"deadline {deadline_iso}, " in output and " late at " in output

        # ... and logged it where an operator looks: the triggerer's log.
        lines = wait_for("the alert line in the triggerer's log", lambda: triggerer_lines(stack, run_id), 60)
        assert len(lines) == 1, lines
        assert f"deadline {deadline_iso}, " in lines[0] and "landing run not finished" in lines[0]
    finally:
        # The held run must not start when the DAG resumes, and the DAG must resume whatever
        # fails here: the later tests' landings need it.
        try:
            af.mark_run_failed(DAG_ID, run_id)
            delete_run(af, run_id)
        finally:
            af.set_paused(DAG_ID, was_paused)
