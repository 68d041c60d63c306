"""The landing DAG's `land` task: a SparkSubmitOperator that does a run with nothing new itself.

A run with nothing new to land still commits (see streamlab/landing_run.py), but needs no Spark:
the task does it through WebHDFS and librdkafka in about a second, where spark-submit costs a JVM
start of 5-10 s on a busy 2-core machine. As soon as a topic has records, the task submits the
Spark job as any SparkSubmitOperator does, with the same arguments. Either way the run report is
in HDFS for the `report` task.
"""

from __future__ import annotations

import logging
from typing import Any

from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator

from streamlab import landing_run

log = logging.getLogger("streamlab.landing_operator")
WEBHDFS_TIMEOUT_S = (10, 120)  # connect, read


class LandingSubmitOperator(SparkSubmitOperator):
    """`application_args` are the landing job's arguments (streamlab.landing_run.parse_args)."""

    def __init__(self, *, webhdfs_conn_id: str = "webhdfs_default", **kwargs: Any):
        super().__init__(**kwargs)
        self.webhdfs_conn_id = webhdfs_conn_id

    def execute(self, context: Any) -> None:
        report = self.run_without_spark()
        if report is None:
            super().execute(context)
        elif report["status"] != "ok":  # as the Spark job's exit status 1: the task fails, retries
            from airflow.exceptions import AirflowException

            raise AirflowException(f"landing failed for topics {report['failed_topics']}")

    def run_without_spark(self) -> dict[str, Any] | None:
        """The run's report when it was done here (and written to HDFS); None: spark-submit it."""
        from airflow.providers.apache.hdfs.hooks.webhdfs import WebHDFSHook

        try:
            client = WebHDFSHook(webhdfs_conn_id=self.webhdfs_conn_id).get_conn()
            # The hook's client waits forever; a hung NameNode must not hold the task for its
            # 45-minute timeout (the `hdfs` client passes this to every request).
            client._timeout = WEBHDFS_TIMEOUT_S
            report = landing_run.run_without_spark([str(a) for a in self.application_args], client)
        except Exception:  # the Spark job does the same run and reports what is wrong its own way
            log.warning("the run without Spark failed; submitting the Spark job", exc_info=True)
            return None
        if report is None:
            log.info("records to land: submitting the Spark job")
            return None
        log.info(
            "nothing new to land: run %s done without Spark (status %s)", report["run_id"], report["status"]
        )
        return report
