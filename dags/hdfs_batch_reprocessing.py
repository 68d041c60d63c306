"""
### hdfs_batch_reprocessing

Daily word count of the values landed by `kafka_to_hdfs_landing`, one run per UTC day (the data
interval), written to `/data/curated/wordcount/dt=YYYY-MM-DD/` (Parquet `word`, `count` and a
`_SUCCESS` file holding a JSON summary). Job: `spark_jobs/batch_wordcount.py`, with the same
tokenization as the streaming word count (`streamlab/textproc.py`). Paths and the Asset are
named in `streamlab/lake.py`.

1. `wait_for_landing` (sensor, reschedule mode): the day is complete when, for every topic, the
   landing has committed a run planned after the end of the day plus `lateness_minutes`. Such a
   run landed every record Kafka had appended by then (landing log under
   `/data/raw/<topic>/_landing/log/`, read through `webhdfs_default`).
2. `wordcount`: computes, checks (sum of counts == tokens read) and publishes atomically: a
   re-run replaces the day's result so that no reader ever sees old and new files mixed.
3. `summary`: the published summary as XCom, and an Asset event for `curated/wordcount`.

Backfill any past range (one run per day, re-running days that already succeeded):

    bin/airflow backfill create --dag-id hdfs_batch_reprocessing \\
        --from-date 2025-01-01 --to-date 2025-01-03 --reprocess-behavior completed

Params: `topics` (default: the text topics the topics file lands), `lateness_minutes` (10).
Freshness alert: a day not published by its end + 10 minutes + `STREAMLAB_BATCH_DEADLINE_HOURS`
(3) fires a deadline alert (streamlab/alerts.py, README "Freshness alerts").
Records produced later with an old timestamp land in that day's folders afterwards: re-run the
day to include them.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
from airflow.sdk import Asset, CronDataIntervalTimetable, Param, PokeReturnValue, dag, task

from streamlab import alerts, deps, lake
from streamlab.topics import landed_topics

JOB = Path(__file__).resolve().parents[1] / "spark_jobs" / "batch_wordcount.py"
DAY = "{{ data_interval_start.strftime('%Y-%m-%d') }}"
WORDCOUNT = Asset(**lake.WORDCOUNT_ASSET)
# validated: an invalid topics file fails the parse, naming the file and the field
TEXT_TOPICS = [t.name for t in landed_topics() if t.value_format == "text"]
LATENESS_MINUTES = 10


@dag(
    dag_id="hdfs_batch_reprocessing",
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),
    start_date=datetime(2024, 1, 1),
    catchup=False,
    max_active_runs=3,
    is_paused_upon_creation=False,
    deadline=alerts.batch_deadline(LATENESS_MINUTES),
    tags=["spark", "hdfs", "batch"],
    default_args={
        "owner": "streamlab-platform",
        "retries": 2,
        "retry_delay": timedelta(minutes=1),
    },
    params={
        "topics": Param(TEXT_TOPICS, type="array", items={"type": "string"}),
        "lateness_minutes": Param(LATENESS_MINUTES, type="integer", minimum=0),
    },
    doc_md=__doc__,
)
def hdfs_batch_reprocessing():
    @task.sensor(poke_interval=60, timeout=12 * 3600, mode="reschedule")
    def wait_for_landing(params=None, data_interval_start=None) -> PokeReturnValue:
        """Done when every topic's landing log shows a commit planned after the day's end."""
        import logging

        from airflow.providers.apache.hdfs.hooks.webhdfs import WebHDFSHook

        from streamlab import landing

        log = logging.getLogger("streamlab.hdfs_batch_reprocessing")
        day = data_interval_start.strftime("%Y-%m-%d")
        fs = landing.WebHdfsFileSystem(WebHDFSHook(webhdfs_conn_id="webhdfs_default").get_conn())
        lateness = int(params["lateness_minutes"]) * 60_000
        status = {}
        for topic in params["topics"]:
            done, through = landing.day_complete(fs, lake.TopicPaths(topic), day, lateness)
            status[topic] = {"complete": done, "landed_through_ms": through}
            log.info("%s %s: landed through %s -> %s", topic, day, through, "complete" if done else "waiting")
        return PokeReturnValue(is_done=all(s["complete"] for s in status.values()), xcom_value=status)

    wordcount = SparkSubmitOperator(
        task_id="wordcount",
        conn_id="spark_default",
        name="batch_wordcount",
        application=str(JOB),
        py_files=str(deps.python_archive()),  # the streamlab package, repacked if stale before each submit
        pre_execute=lambda context: deps.ensure_python_archive(),
        application_args=[
            "--date",
            DAY,
            "--topic",
            "{{ params.topics | join(',') }}",
            "--run-id",
            "{{ run_id }}",
        ],
        execution_timeout=timedelta(hours=2),
    )

    @task(outlets=[WORDCOUNT])
    def summary(data_interval_start=None, outlet_events=None) -> dict:
        """The `_SUCCESS` summary of the published day."""
        import json

        from airflow.providers.apache.hdfs.hooks.webhdfs import WebHDFSHook

        day = data_interval_start.strftime("%Y-%m-%d")
        client = WebHDFSHook(webhdfs_conn_id="webhdfs_default").get_conn()
        with client.read(f"{lake.wordcount_day(day)}/{lake.SUMMARY_FILE}") as f:
            result = json.loads(f.read())
        outlet_events[WORDCOUNT].extra = {
            "date": day,
            "tokens": result["tokens"],
            "records": result["records"],
        }
        return result

    wait_for_landing() >> wordcount >> summary()


hdfs_batch_reprocessing()
