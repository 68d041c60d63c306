"""
### streaming_wordcount

Keeps the streaming word count (`spark_jobs/wordcount_stream.py`) running: Kafka topic
`Hello-Kafka` -> running totals on the compacted topic `wordcounts` (key = word, value = count),
plus the lab's console table appended to `$STREAMLAB_HOME/out` (param `console_file`).

**Supervision.** `schedule="@continuous"` with `max_active_runs=1`: exactly one run at a time,
and a new run starts as soon as one ends. Inside a run, a crashed job (non-zero exit, kill -9)
is retried with exponential back-off (10 s, 20 s, 40 s, ... at most 5 min); when the retries are
used up the run fails and the next run starts at once. The job resumes from its checkpoint
(`/checkpoints/wordcount_stream/<group_id>` on HDFS), so the counts stay exact.

**Where it runs** is decided by the connection `spark_default` only (local by default; a
Spark standalone master or `yarn` by editing the connection). Kafka is reached
through the connection `kafka_default` (extra `bootstrap.servers`).

**Start / watch / stop.** Unpaused on creation, so it starts by itself. Watch the task log (the
spark-submit output) in the UI, or `tail -f $STREAMLAB_HOME/out`. To stop: `make stream-stop`
(pauses this DAG, else the continuous schedule starts a new run, then fails its runs: the task's
whole process group, spark-submit JVM and python driver, is killed); `make stream-start`
resumes. By hand in the UI: pause, then mark the running run failed. See docs/streaming.md.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
from airflow.sdk import DAG, Param

from streamlab import deps

SPARK_JOBS = Path(__file__).resolve().parents[1] / "spark_jobs"

with DAG(
    dag_id="streaming_wordcount",
    schedule="@continuous",
    start_date=datetime(2024, 1, 1),
    catchup=False,
    max_active_runs=1,
    is_paused_upon_creation=False,
    tags=["spark", "kafka", "streaming"],
    default_args={
        "owner": "streamlab-platform",
        # A long-lived run: each crash of the job is one retry. Back-off doubles from 10 s up to
        # 5 min; after 20 crashes in one run the run fails and @continuous starts a fresh one
        # (with a fresh back-off).
        "retries": 20,
        "retry_delay": timedelta(seconds=10),
        "retry_exponential_backoff": 2.0,
        "max_retry_delay": timedelta(minutes=5),
    },
    params={
        "input_topics": Param("Hello-Kafka", type="string", description="comma-separated"),
        "output_topic": Param("wordcounts", type="string"),
        "group_id": Param("wordcount", type="string", description="names the checkpoint too"),
        "console_file": Param(
            "$STREAMLAB_HOME/out",
            type="string",
            description="append the console table here ($VARS expanded by the job); empty: off",
        ),
    },
    doc_md=__doc__,
) as dag:
    SparkSubmitOperator(
        task_id="wordcount_stream",
        conn_id="spark_default",
        name="wordcount_stream",
        application=str(SPARK_JOBS / "wordcount_stream.py"),
        py_files=str(deps.python_archive()),  # the streamlab package, repacked if stale before each submit
        pre_execute=lambda context: deps.ensure_python_archive(),
        application_args=[
            "{{ conn.kafka_default.extra_dejson['bootstrap.servers'] }}",
            "{{ params.input_topics }}",
            "{{ params.group_id }}",
            "--output-topic={{ params.output_topic }}",
            "--console-file={{ params.console_file }}",
            # The table lists the words a micro-batch changed, largest totals first: 100 rows
            # show what was just typed, without copying a whole busy batch into the file.
            "--console-rows=100",
        ],
        # Runs until stopped: no execution_timeout.
    )
