"""What `up` does once the services are healthy (provision the topics, report the streaming job),
and `make stream-stop` / `make stream-start`: through Airflow's REST API."""

from __future__ import annotations

import time

from streamlab.config import REPO, StackConfig
from streamlab.stack.service import StackError, say

PROVISION_DAG = "kafka_topics_provision"
STREAMING_DAG = "streaming_wordcount"


def start(cfg: StackConfig, timeout: float = 180, provision: bool = True) -> None:
    """Make the platform do its job without clicks: topics provisioned, streaming running.

    Provisioning runs on every start (it is idempotent, and the topics file may have changed),
    and on a no-op `up` only if it never succeeded; the streaming DAG is
    continuous and unpaused at creation, so the scheduler starts and supervises it. A DAG the
    user paused stays paused.
    """
    if not (REPO / "dags" / f"{PROVISION_DAG}.py").exists():
        return
    try:
        _start(cfg, timeout, provision)
    except (OSError, ValueError, KeyError) as exc:  # HTTP errors are OSErrors
        raise rest_api_error(cfg, exc) from None


def rest_api_error(cfg: StackConfig, exc: Exception) -> StackError:
    if isinstance(exc, TimeoutError):
        return StackError(
            f"Airflow's REST API at {cfg.airflow_url} did not answer in time ({exc}). If `make status` "
            f"shows it healthy, it is busy: see {cfg.log_dir / 'airflow-api-server.log'}, then run the "
            "command again."
        )
    return StackError(
        f"could not talk to Airflow's REST API at {cfg.airflow_url}: {exc}; is the stack up (`make status`)?"
    )


def _start(cfg: StackConfig, timeout: float, provision: bool) -> None:
    from streamlab.airflow_client import AirflowClient

    client = AirflowClient(cfg)
    deadline = time.monotonic() + timeout
    while client.dag(PROVISION_DAG) is None:
        if time.monotonic() > deadline:
            raise StackError(
                f"DAG {PROVISION_DAG} was not parsed within {timeout:.0f} s; see "
                f"{cfg.log_dir / 'airflow-dag-processor.log'} and `bin/airflow dags list-import-errors`."
            )
        time.sleep(2)
    if provision or not client.runs(PROVISION_DAG, state="success", limit=1):
        say(f"provisioning Kafka topics from dags/topics.yaml (DAG {PROVISION_DAG})")
        run_id = client.trigger(PROVISION_DAG)["dag_run_id"]
        while True:
            state = client.run_state(PROVISION_DAG, run_id)
            if state in ("success", "failed"):
                break
            if time.monotonic() > deadline:
                raise StackError(f"{PROVISION_DAG} run {run_id} still {state} after {timeout:.0f} s")
            time.sleep(2)
        if state != "success":
            raise StackError(
                f"{PROVISION_DAG} run {run_id} failed: see its log in the Airflow UI or under "
                f"{cfg.airflow_home / 'logs'}; fix dags/topics.yaml or the drift it reports, then "
                "`make up` again."
            )
        say("topics provisioned")
    streaming = client.dag(STREAMING_DAG)
    if streaming is not None:
        say(
            f"{STREAMING_DAG}: {'paused (`make stream-start` runs it)' if streaming['is_paused'] else 'running under the scheduler'}"
        )


def stream(cfg: StackConfig, action: str) -> None:
    """`stream-stop`: pause the streaming DAG and end its runs (the Spark job goes with its task);
    `stream-start`: unpause it, so the continuous schedule starts a run from the checkpoint; when a
    triggered run is queued (other topics, `--conf`), the oldest one gets the single run slot: a
    scheduled run that holds it, or takes it first, is failed."""
    from streamlab.airflow_client import AirflowClient

    try:
        client = AirflowClient(cfg)
        if action == "stop":
            say(f"pausing {STREAMING_DAG} and failing its running and queued runs")
            ended = client.stop_dag(STREAMING_DAG)
            say(f"stopped: {', '.join(ended) or 'no run was active'}; the job's processes end within seconds")
        else:
            triggered = [
                r for r in client.runs(STREAMING_DAG, state="queued") if r.get("run_type") == "manual"
            ]
            client.set_paused(STREAMING_DAG, False)
            if not triggered:
                say(f"{STREAMING_DAG} unpaused: a run starts within seconds, resuming from its checkpoint")
                return
            # The oldest run triggered while the DAG was paused gets the single run slot.
            run_id = min(triggered, key=lambda r: r.get("queued_at") or "")["dag_run_id"]
            say(f"{STREAMING_DAG} unpaused: waiting for the triggered run {run_id} to start")
            failed = client.give_slot(STREAMING_DAG, run_id)
            if failed:
                say(f"failed the scheduled run(s) that started before it: {', '.join(failed)}")
            say(f"{run_id} is running")
    except RuntimeError as exc:  # runs kept starting
        raise StackError(str(exc)) from None
    except (OSError, ValueError, KeyError) as exc:  # HTTP errors are OSErrors
        raise rest_api_error(cfg, exc) from None
