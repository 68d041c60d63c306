"""
### kafka_topics_provision

Applies the topics file `dags/topics.yaml` to Kafka (topics as code, `streamlab.topics`):

- creates the missing topics, adds partitions when the file asks for more;
- sets the configs that differ and removes topic-level overrides the file does not list;
- **fails** on any other drift (fewer partitions than the cluster has, another replication
  factor): those need a human, and a mismatch must never pass silently.

A second run changes nothing and reports `in sync`. The task log shows a table of the actions;
the report (status, actions) is the task's return value (XCom `return_value`).

Kafka is reached through the Airflow connection `kafka_default` (extra = librdkafka config).
Triggered by `make up`, or by hand: `bin/airflow dags trigger kafka_topics_provision`.
Cluster profile: set `STREAMLAB_TOPIC_REPLICATION_FACTOR` / `STREAMLAB_TOPIC_MIN_ISR` in the
environment of the Airflow workers (see the header of `dags/topics.yaml`).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import dag, task


@dag(
    dag_id="kafka_topics_provision",
    schedule=None,
    start_date=datetime(2024, 1, 1),
    catchup=False,
    max_active_runs=1,
    is_paused_upon_creation=False,
    tags=["kafka", "provisioning"],
    default_args={
        "owner": "streamlab-platform",
        "retries": 2,
        "retry_delay": timedelta(seconds=15),
    },
    doc_md=__doc__,
)
def kafka_topics_provision():
    @task
    def provision_topics() -> dict:
        """Plan and apply dags/topics.yaml; fail (without retry) on drift."""
        import logging

        from airflow.providers.apache.kafka.hooks.client import KafkaAdminClientHook
        from airflow.sdk.exceptions import AirflowFailException

        from streamlab import topics

        log = logging.getLogger("streamlab.kafka_topics_provision")
        desired = topics.load_topics()
        admin = KafkaAdminClientHook(kafka_config_id="kafka_default").get_conn
        try:
            report = topics.apply(admin, desired)
        except topics.TopicDriftError as err:
            log.error("Topic drift, file %s:\n%s", topics.topics_file(), err.report.table())
            # Retrying cannot fix drift: fail now, with the drift in the message.
            raise AirflowFailException(str(err)) from err
        log.info("Topics file %s:\n%s", topics.topics_file(), report.table())
        return report.to_dict()

    provision_topics()


kafka_topics_provision()
