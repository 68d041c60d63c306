"""
### kafka_to_hdfs_landing

Lands every topic of `dags/topics.yaml` marked `land: true` (`Hello-Kafka` by default) into HDFS,
exactly once for any reader that lists the folders (docs/landing.md):

    /data/raw/<topic>/dt=YYYY-MM-DD/hr=HH/part-<topic>+<partition>+<first>+<last>.parquet

Each run lands, per partition, from where the previous run stopped to the end offsets it sees at
its start; records that cannot be decoded go to `/data/quarantine/<topic>/`; small files of
closed hours are merged. The Spark job is `spark_jobs/kafka_to_hdfs_landing.py`, submitted
through the connection `spark_default` (local, or a cluster by changing the connection); a run
with nothing new is done by the `land` task itself, without Spark (the same protocol through
WebHDFS: about a second instead of a JVM start). Kafka is reached through `kafka_default`, HDFS
through `webhdfs_default`.

- **Schedule**: every 10 minutes; another interval with the environment variable
  `STREAMLAB_LANDING_SCHEDULE` (a cron expression) of the DAG processor. One run at a time.
- **Params**: `accept_data_loss` (default false): if Kafka's retention deleted records before
  they were landed, the run fails and names the topic, partition and offsets; set it to true
  to skip them (recorded in the report). `topics`: `name=text|bytes` entries to land instead of
  the topics file's (the Asset events are emitted for the topics-file topics only).
  `parallel_topics` (default 4): how many topics are landed at once, each with its own commit
  and Spark job (1: one after the other).
- **Freshness alert**: a run not finished `STREAMLAB_LANDING_DEADLINE_MINUTES` (30) after it
  was queued fires a deadline alert (streamlab/alerts.py, README "Freshness alerts").
- **Report** (task `report`): per topic-partition offset range, records, bytes, files,
  quarantined records and lag before/after: in the task log and as XCom `return_value`. On
  success it emits an Asset event per landed topic (`streamlab-raw://data/raw/<topic>`).

By hand: `bin/airflow dags trigger kafka_to_hdfs_landing` (`--conf '{"accept_data_loss": true}'`).
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from pathlib import Path

from airflow.sdk import Asset, Param, dag, task

from streamlab import alerts, deps, lake, landing_run
from streamlab.landing_operator import LandingSubmitOperator
from streamlab.topics import landed_topics

JOB = Path(__file__).resolve().parents[1] / "spark_jobs" / "kafka_to_hdfs_landing.py"
SCHEDULE = os.environ.get("STREAMLAB_LANDING_SCHEDULE", "*/10 * * * *")
LANDED = landed_topics()  # validated: an invalid topics file fails the parse, naming file and field
ASSETS = {t.name: Asset(**lake.raw_asset(t.name)) for t in LANDED}


@dag(
    dag_id="kafka_to_hdfs_landing",
    schedule=SCHEDULE,
    start_date=datetime(2024, 1, 1),
    catchup=False,
    max_active_runs=1,
    is_paused_upon_creation=False,
    dagrun_timeout=timedelta(hours=1),
    deadline=alerts.landing_deadline(),
    tags=["kafka", "spark", "hdfs", "landing"],
    default_args={
        "owner": "streamlab-platform",
        "retries": 2,
        "retry_delay": timedelta(seconds=30),
    },
    params={
        "accept_data_loss": Param(
            False, type="boolean", description="skip records Kafka deleted before they were landed"
        ),
        "on_topic_reset": Param(
            "fail",
            enum=["fail", "land-new"],
            description="the topic was deleted and re-created, or a partition truncated: fail, or land "
            "what it holds now as a new generation of files (docs/landing.md)",
        ),
        "parallel_topics": Param(
            landing_run.PARALLEL_TOPICS,
            type="integer",
            minimum=1,
            description="topics landed at once, each with its own commit and Spark job (1: in turn)",
        ),
        "topics": Param(
            [f"{t.name}={t.value_format}" for t in LANDED],
            type="array",
            items={"type": "string"},
            description="name=text|bytes",
        ),
    },
    doc_md=__doc__,
)
def kafka_to_hdfs_landing():
    land = LandingSubmitOperator(
        task_id="land",
        conn_id="spark_default",
        name="kafka_to_hdfs_landing",
        application=str(JOB),
        py_files=str(deps.python_archive()),  # the streamlab package, repacked if stale before each submit
        pre_execute=lambda context: deps.ensure_python_archive(),
        application_args=[
            "--bootstrap-servers",
            "{{ conn.kafka_default.extra_dejson['bootstrap.servers'] }}",
            "--topic",
            "{{ params.topics | join(',') }}",
            "--run-id",
            "{{ run_id }}",
            "--accept-data-loss={{ params.accept_data_loss }}",
            "--on-topic-reset={{ params.on_topic_reset }}",
            "--parallel-topics={{ params.parallel_topics }}",
            "--exit-with-launcher",
        ],
        execution_timeout=timedelta(minutes=45),
    )

    @task(outlets=list(ASSETS.values()), trigger_rule="all_done")
    def report(**context) -> dict:
        """Read the run report from HDFS, log it, push it (XCom) and describe the Asset events."""
        import json
        import logging

        from airflow.providers.apache.hdfs.hooks.webhdfs import WebHDFSHook
        from airflow.sdk.exceptions import AirflowFailException

        from streamlab import landing

        log = logging.getLogger("streamlab.kafka_to_hdfs_landing")
        ti = context["ti"]
        client = WebHDFSHook(webhdfs_conn_id="webhdfs_default").get_conn()
        fs = landing.WebHdfsFileSystem(client)
        path = lake.report_path(context["run_id"])  # the job deletes it first, writes it last
        if fs.status(path) is None:
            raise AirflowFailException(f"no landing report at {path}: the landing job did not finish")
        result = json.loads(fs.read(path).decode())
        log.info("%s\nreport: %s", landing.format_report(result), path)
        ti.xcom_push(key="report", value=result)  # also when the run failed (e.g. a retention gap)
        if result["status"] != "ok":
            errors = "; ".join(
                f"{t['topic']}: {t.get('error')}" for t in result["topics"] if t["status"] == "error"
            )
            raise AirflowFailException(f"landing failed: {errors}")
        for t in result["topics"]:
            if t["topic"] in ASSETS:
                context["outlet_events"][ASSETS[t["topic"]]].extra = {
                    "run_id": result["run_id"],
                    "status": t["status"],
                    "seq": t["seq"],
                    "landed_through_ms": t["planned_at_ms"],
                    **t["totals"],
                }
        return result

    land >> report()


kafka_to_hdfs_landing()
