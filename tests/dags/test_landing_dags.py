"""The wiring of the landing and reprocessing DAGs (no services needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def dags():
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(REPO / "dags"), safe_mode=False)
    return bag.dags


def test_landing_dag_is_one_spark_submit_and_a_report(dags):
    dag = dags["kafka_to_hdfs_landing"]
    assert dag.max_active_runs == 1 and not dag.catchup
    assert dag.params["accept_data_loss"] is False
    assert "Hello-Kafka=text" in dag.params["topics"]
    land, report = dag.get_task("land"), dag.get_task("report")
    assert land.downstream_task_ids == {"report"}
    assert land._conn_id == "spark_default" and land.name == "kafka_to_hdfs_landing"
    assert Path(land.application).is_file()
    assert all(Path(p).is_file() for p in land.py_files.split(","))
    args = " ".join(land.application_args)
    assert "{{ conn.kafka_default.extra_dejson['bootstrap.servers'] }}" in args
    assert "--accept-data-loss={{ params.accept_data_loss }}" in args and "{{ run_id }}" in args
    assert [a.name for a in report.outlets] == ["raw/Hello-Kafka"]


def test_reprocessing_dag_is_daily_by_data_interval_and_backfillable(dags):
    dag = dags["hdfs_batch_reprocessing"]
    assert type(dag.timetable).__name__ == "CronDataIntervalTimetable" and not dag.catchup
    assert [t.task_id for t in dag.topological_sort()] == ["wait_for_landing", "wordcount", "summary"]
    wc = dag.get_task("wordcount")
    assert Path(wc.application).name == "batch_wordcount.py" and Path(wc.py_files).name == "textproc.py"
    assert "data_interval_start" in " ".join(wc.application_args)
    assert dag.params["topics"] == ["Hello-Kafka"]
