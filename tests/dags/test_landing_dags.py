"""The wiring of the landing and reprocessing DAGs, and of every Spark task (no services needed)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from streamlab import deps

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
    args = " ".join(land.application_args)
    assert "{{ conn.kafka_default.extra_dejson['bootstrap.servers'] }}" in args
    assert "--accept-data-loss={{ params.accept_data_loss }}" in args and "{{ run_id }}" in args
    assert "--parallel-topics={{ params.parallel_topics }}" in args and dag.params["parallel_topics"] == 4
    assert [a.name for a in report.outlets] == ["raw/Hello-Kafka"]


def test_reprocessing_dag_is_daily_by_data_interval_and_backfillable(dags):
    dag = dags["hdfs_batch_reprocessing"]
    assert type(dag.timetable).__name__ == "CronDataIntervalTimetable" and not dag.catchup
    assert [t.task_id for t in dag.topological_sort()] == ["wait_for_landing", "wordcount", "summary"]
    wc = dag.get_task("wordcount")
    assert Path(wc.application).name == "batch_wordcount.py"
    assert "data_interval_start" in " ".join(wc.application_args)
    assert dag.params["topics"] == ["Hello-Kafka"]


def test_both_dags_declare_their_freshness_deadline(dags):
    """The landing from its queued_at, the batch from its logical date (README "Freshness alerts"),
    each with the shared callback; as the DAG processor stores them (serialized)."""
    from datetime import timedelta

    from airflow.sdk import DeadlineReference
    from airflow.serialization.serialized_objects import DagSerialization

    from streamlab import alerts

    batch = dags["hdfs_batch_reprocessing"]
    expected = {
        "kafka_to_hdfs_landing": (alerts.landing_deadline(), "DagRunQueuedAtDeadline"),
        "hdfs_batch_reprocessing": (
            alerts.batch_deadline(batch.params["lateness_minutes"]),
            "DagRunLogicalDateDeadline",
        ),
    }
    for dag_id, (want, reference_type) in expected.items():
        assert want is not None, f"{dag_id}: the environment declares no deadline (a setting of 0)"
        alerts_of_dag = dags[dag_id].deadline
        assert isinstance(alerts_of_dag, list) and len(alerts_of_dag) == 1, f"{dag_id}: {alerts_of_dag}"
        [alert] = alerts_of_dag
        assert alert == want  # reference type, interval and callback (path and kwargs)
        assert alert.callback.path == "streamlab.alerts.deadline_missed"
        [stored] = DagSerialization.to_dict(dags[dag_id])["dag"]["deadline"]
        assert stored["reference"] == {"reference_type": reference_type}
        assert stored["interval"]["__data__"] == alert.interval.total_seconds()
    assert dags["kafka_to_hdfs_landing"].deadline[0].reference == DeadlineReference.DAGRUN_QUEUED_AT
    # a day's run has the start of the day as logical date: deadline = day end + lateness + grace
    grace = alerts.env_interval(alerts.BATCH_DEADLINE_ENV, alerts.DEFAULT_BATCH_HOURS, "hours")
    assert batch.deadline[0].interval == timedelta(days=1, minutes=batch.params["lateness_minutes"]) + grace


def _spark_tasks(dags):
    from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator

    return [t for dag in dags.values() for t in dag.tasks if isinstance(t, SparkSubmitOperator)]


def test_every_spark_task_ships_the_package_archive_and_checks_it(dags):
    tasks = _spark_tasks(dags)
    assert {t.dag_id for t in tasks} == {
        "kafka_to_hdfs_landing",
        "hdfs_batch_reprocessing",
        "streaming_wordcount",
    }
    for task in tasks:
        assert task.py_files == str(deps.python_archive()), task.task_id
        assert Path(task.application).is_file() and task._pre_execute_hook is not None


def test_the_hook_before_submit_fails_without_the_archive_and_names_make_deps(dags, tmp_path, monkeypatch):
    monkeypatch.setenv("STREAMLAB_DEPS", str(tmp_path))
    for task in _spark_tasks(dags):
        with pytest.raises(deps.PythonArchiveError, match=r"missing: run `make deps`"):
            task._pre_execute_hook({})
    deps.build_python_archive()  # into tmp_path, from this checkout
    for task in _spark_tasks(dags):
        task._pre_execute_hook({})
    assert deps.archive_digest(deps.python_archive()) == deps.sources_digest()


def test_landed_topics_come_from_the_validated_loader(tmp_path, monkeypatch):
    """An invalid topics file is an import error of the DAGs that read it, naming file and field."""
    from airflow.dag_processing.dagbag import DagBag

    bad = tmp_path / "topics.yaml"
    bad.write_text("topics:\n  - {name: t, partitions: 0, replication_factor: 1, land: true}\n")
    monkeypatch.setenv("STREAMLAB_TOPICS_FILE", str(bad))
    bag = DagBag(dag_folder=str(REPO / "dags"), safe_mode=False)
    errors = {Path(f).name: e for f, e in bag.import_errors.items()}
    assert set(errors) == {"kafka_to_hdfs_landing.py", "hdfs_batch_reprocessing.py"}
    for error in errors.values():
        assert f"{bad}: topic 't': field 'partitions' must be a whole number >= 1" in error


def test_the_land_task_submits_spark_only_when_the_run_without_it_cannot_finish(dags, monkeypatch):
    """A no-op run done in the task; records (None) or a failure of the run without Spark go to
    spark-submit; a run done without Spark whose topic failed fails the task, as the job's exit
    status 1 does (so Airflow retries it)."""
    from airflow.exceptions import AirflowException
    from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator

    from streamlab import landing_run

    land = dags["kafka_to_hdfs_landing"].get_task("land")
    monkeypatch.setattr(
        land, "application_args", ["--bootstrap-servers", "h:1", "--topic", "t", "--run-id", "r"]
    )
    submitted = []
    monkeypatch.setattr(SparkSubmitOperator, "execute", lambda self, context: submitted.append(self.task_id))
    monkeypatch.setattr(
        "airflow.providers.apache.hdfs.hooks.webhdfs.WebHDFSHook.get_conn", lambda self: SimpleNamespace()
    )
    outcomes = {
        "noop": {"run_id": "r", "status": "ok", "failed_topics": []},
        "records": None,
        "failed": {"run_id": "r", "status": "failed", "failed_topics": ["t"]},
    }
    for name, outcome in outcomes.items():
        monkeypatch.setattr(landing_run, "run_without_spark", lambda argv, client, o=outcome: o)
        submitted.clear()
        if name == "failed":
            with pytest.raises(AirflowException, match=r"\['t'\]"):
                land.execute({})
        else:
            land.execute({})
        assert submitted == (["land"] if name == "records" else []), name

    def broken(argv, client):
        raise ConnectionError("WebHDFS down")

    monkeypatch.setattr(landing_run, "run_without_spark", broken)
    submitted.clear()
    land.execute({})
    assert submitted == ["land"]
