"""Unit tests of streamlab.topics: file validation and the pure plan(); no broker."""

from __future__ import annotations

import json
import textwrap

import pytest
import yaml
from jsonschema import Draft202012Validator

from streamlab import topics
from streamlab.topics import (
    ADD_PARTITIONS,
    CREATE,
    DELETE_CONFIG,
    DRIFT,
    SET_CONFIG,
    Action,
    ProvisionReport,
    TopicsFileError,
    TopicSpec,
    TopicState,
    parse_topics,
    plan,
)


def spec(name="t", partitions=1, rf=1, **configs) -> TopicSpec:
    return TopicSpec(name, partitions, rf, {k.replace("_", "."): v for k, v in configs.items()})


def state(name="t", partitions=1, rf=1, configs=None, overrides=(), min_replicas=None) -> TopicState:
    return TopicState(name, partitions, rf, dict(configs or {}), frozenset(overrides), min_replicas)


# ---- plan() ---------------------------------------------------------------------------------


def test_missing_topic_is_created_with_everything_the_file_says():
    actions = plan([spec("a", 3, 1, cleanup_policy="compact")], {})
    assert actions == [
        Action("a", CREATE, "topic", None, "partitions=3, replication_factor=1, cleanup.policy=compact")
    ]


def test_matching_topic_gives_no_action():
    desired = [spec("a", 2, 1, retention_ms="1000")]
    actual = {"a": state("a", 2, 1, {"retention.ms": "1000", "cleanup.policy": "delete"}, {"retention.ms"})}
    assert plan(desired, actual) == []


def test_config_equal_to_the_broker_default_is_in_sync_without_an_override():
    # The file asks for the value the broker already applies by default: nothing to change.
    desired = [spec("a", cleanup_policy="delete")]
    assert plan(desired, {"a": state("a", configs={"cleanup.policy": "delete"})}) == []


def test_more_partitions_in_the_file_adds_partitions():
    assert plan([spec("a", 4)], {"a": state("a", 2)}) == [Action("a", ADD_PARTITIONS, "partitions", "2", "4")]


def test_fewer_partitions_in_the_file_is_drift():
    actions = plan([spec("a", 1)], {"a": state("a", 3)})
    assert actions == [Action("a", DRIFT, "partitions", "3", "1")]
    assert actions[0].is_drift
    assert "cannot remove partitions" in actions[0].describe()


def test_other_replication_factor_is_drift():
    actions = plan([spec("a", rf=3)], {"a": state("a", rf=1)})
    assert actions == [Action("a", DRIFT, "replication_factor", "1", "3")]
    assert "reassignment" in actions[0].describe()


def test_uneven_replication_is_drift_even_when_the_largest_count_matches():
    actions = plan([spec("a", rf=3)], {"a": state("a", rf=3, min_replicas=2)})
    assert actions == [Action("a", DRIFT, "replication_factor", "2..3 (uneven)", "3")]


def test_config_that_differs_is_set():
    desired = [spec("a", retention_ms="604800000")]
    actual = {"a": state("a", configs={"retention.ms": "1000"}, overrides={"retention.ms"})}
    assert plan(desired, actual) == [Action("a", SET_CONFIG, "retention.ms", "1000", "604800000")]


def test_config_unknown_to_the_cluster_is_set():
    # Unknown names are left to the broker to refuse, with the topic named in the error.
    assert plan([spec("a", x_y="1")], {"a": state("a")}) == [Action("a", SET_CONFIG, "x.y", None, "1")]


def test_override_not_in_the_file_is_deleted():
    actual = {
        "a": state("a", configs={"retention.ms": "5", "cleanup.policy": "delete"}, overrides={"retention.ms"})
    }
    assert plan([spec("a")], actual) == [Action("a", DELETE_CONFIG, "retention.ms", "5", None)]


def test_list_values_compare_without_spaces():
    desired = parse_topics(
        {
            "topics": [
                {
                    "name": "a",
                    "partitions": 1,
                    "replication_factor": 1,
                    "configs": {"cleanup.policy": "compact, delete"},
                }
            ]
        },
        env={},
    )
    actual = {"a": state("a", configs={"cleanup.policy": "compact,delete"}, overrides={"cleanup.policy"})}
    assert plan(desired, actual) == []


def test_drift_and_safe_changes_are_all_listed_in_file_order():
    desired = [spec("b", 2, 3, retention_ms="10"), spec("a", 1)]
    actual = {"b": state("b", 1, 1, {"retention.ms": "20"}, {"retention.ms"}), "other": state("other", 9)}
    assert plan(desired, actual) == [
        Action("b", ADD_PARTITIONS, "partitions", "1", "2"),
        Action("b", DRIFT, "replication_factor", "1", "3"),
        Action("b", SET_CONFIG, "retention.ms", "20", "10"),
        Action("a", CREATE, "topic", None, "partitions=1, replication_factor=1"),
    ]


def test_plan_of_the_planned_state_is_empty():
    # Idempotence at the plan level: once the actions are applied, nothing is left to do.
    desired = [spec("a", 3, 1, retention_ms="10")]
    applied = {"a": state("a", 3, 1, {"retention.ms": "10"}, {"retention.ms"})}
    assert plan(desired, applied) == []


# ---- the report -----------------------------------------------------------------------------


def test_report_in_sync():
    report = ProvisionReport(topics=["a", "b"], actions=[], applied=False)
    assert report.status == "in sync"
    assert report.summary().startswith("in sync")
    lines = report.table().splitlines()
    assert lines[0].split() == ["topic", "action", "field", "current", "desired"]
    assert [line.split()[:3] for line in lines[2:4]] == [["a", "in", "sync"], ["b", "in", "sync"]]
    assert report.to_dict()["actions"] == []


def test_report_with_drift_and_changes():
    actions = [Action("a", SET_CONFIG, "retention.ms", "1", "2"), Action("a", DRIFT, "partitions", "3", "1")]
    report = ProvisionReport(topics=["a"], actions=actions, applied=True)
    assert report.status == "drift"
    assert report.summary() == "1 change(s) applied, 1 DRIFT(s) not applied"
    assert report.to_dict()["actions"][1] == {
        "topic": "a",
        "action": "drift",
        "field": "partitions",
        "current": "3",
        "desired": "1",
    }
    err = topics.TopicDriftError(report)
    assert "a: DRIFT partitions is 3 on the cluster but 1 in the file" in str(err)


# ---- loading and validation -----------------------------------------------------------------


def test_the_repository_topics_file_is_valid_and_has_the_lab_topics():
    specs = {s.name: s for s in topics.load_topics(topics.DEFAULT_TOPICS_FILE, env={})}
    assert specs["Hello-Kafka"] == TopicSpec(
        "Hello-Kafka", 1, 1, {"retention.ms": "604800000", "max.message.bytes": "2097152"}, True, "text"
    )
    assert specs["wordcounts"].configs["cleanup.policy"] == "compact"
    assert specs["wordcounts"].land is False
    assert [t.name for t in topics.landed_topics(topics.DEFAULT_TOPICS_FILE)] == ["Hello-Kafka"]


def _doc(**topic):
    return {"topics": [{"name": "a", "partitions": 1, "replication_factor": 1, **topic}]}


def test_defaults_fill_missing_fields_and_merge_configs():
    data = {
        "defaults": {
            "partitions": 3,
            "replication_factor": 1,
            "configs": {"retention.ms": 1000, "x.y": True},
        },
        "topics": [{"name": "a", "configs": {"retention.ms": "5"}}],
    }
    assert parse_topics(data, env={}) == [TopicSpec("a", 3, 1, {"retention.ms": "5", "x.y": "true"})]


def test_environment_overrides_replication_and_min_isr():
    env = {"STREAMLAB_TOPIC_REPLICATION_FACTOR": "3", "STREAMLAB_TOPIC_MIN_ISR": "2"}
    [s] = parse_topics(_doc(), env=env)
    assert (s.replication_factor, s.configs) == (3, {"min.insync.replicas": "2"})


def test_empty_environment_variables_are_ignored():
    env = {"STREAMLAB_TOPIC_REPLICATION_FACTOR": "", "STREAMLAB_TOPIC_MIN_ISR": " "}
    assert parse_topics(_doc(), env=env) == [TopicSpec("a", 1, 1, {})]


@pytest.mark.parametrize(
    ("data", "env", "message"),
    [
        ({"topics": []}, {}, "non-empty list"),
        ({"topics": [{"name": "a"}]}, {}, "topic 'a': field 'partitions' is required"),
        (_doc(partitions=0), {}, "topic 'a': field 'partitions' must be a whole number >= 1, got 0"),
        (_doc(partitions=True), {}, "field 'partitions' must be a whole number"),
        (_doc(replication_factor="two"), {}, "topic 'a': field 'replication_factor' must be"),
        (_doc(partiton=2), {}, "topic 'a': unknown field(s) ['partiton']"),
        (_doc(land="yes"), {}, "topic 'a': field 'land' must be true or false"),
        (_doc(value_format="avro"), {}, "topic 'a': field 'value_format' must be one of"),
        (_doc(configs=["a"]), {}, "topic 'a': field 'configs' must be a mapping"),
        (_doc(configs={"retention.ms": None}), {}, "topic 'a': field 'configs'.retention.ms must be"),
        (_doc(configs={"Bad Name": 1}), {}, "'Bad Name' is not a Kafka topic config name"),
        (_doc(name="bad name"), {}, "topic 'bad name': field 'name' must be 1-249 characters"),
        (_doc(name=None), {}, "topics[0]: field 'name' must be 1-249 characters"),
        (
            _doc(configs={"min.insync.replicas": "2"}),
            {},
            "topic 'a': config 'min.insync.replicas'=2 is larger",
        ),
        (_doc(), {"STREAMLAB_TOPIC_MIN_ISR": "2"}, "'min.insync.replicas'=2 is larger than the replication"),
        (_doc(), {"STREAMLAB_TOPIC_REPLICATION_FACTOR": "x"}, "STREAMLAB_TOPIC_REPLICATION_FACTOR must be"),
        ({"topics": [], "extra": 1}, {}, "unknown top-level key(s) ['extra']"),
        ({"defaults": {"land": True}, "topics": [{"name": "a"}]}, {}, "defaults: unknown key(s) ['land']"),
        (
            {
                "topics": [
                    {"name": "a.b", "partitions": 1, "replication_factor": 1},
                    {"name": "a_b", "partitions": 1, "replication_factor": 1},
                ]
            },
            {},
            "topic 'a_b': field 'name' collides with topic 'a.b'",
        ),
        ("just a string", {}, "must be a mapping"),
        # Digit strings were accepted before the schema; a quoted number in the file is now an error
        # (editors flag it too). Environment variables are strings and still accept digits.
        (_doc(partitions="3"), {}, "topic 'a': field 'partitions' must be a whole number >= 1, got '3'"),
        (_doc(partitions=1.5), {}, "topic 'a': field 'partitions' must be a whole number >= 1, got 1.5"),
        (_doc(name="."), {}, "topic '.': field 'name' must be 1-249 characters"),
        (_doc(name="a\n"), {}, "field 'name' must be 1-249 characters"),
        (_doc(name="x" * 250), {}, "field 'name' must be 1-249 characters"),
        ({"topics": [{"partitions": 1}]}, {}, "topics[0]: field 'name' is required"),
        ({"topics": ["a"]}, {}, "topics[0] must be a mapping, got 'a'"),
        ({}, {}, "`topics:` must be a non-empty list"),
        ({"topics": {"name": "a"}}, {}, "`topics:` must be a non-empty list"),
        (_doc(configs={1: "x"}), {}, "topic 'a': field 'configs': 1 is not a Kafka topic config name"),
        (_doc(configs={"a.b": [1]}), {}, "topic 'a': field 'configs'.a.b must be a string, a number or"),
        (_doc(configs={"min.insync.replicas": "x"}), {}, "topic 'a': config 'min.insync.replicas' must be"),
        ({"defaults": [], "topics": [{"name": "a"}]}, {}, "defaults must be a mapping, got []"),
        (
            {"defaults": {"partitions": 0}, "topics": [{"name": "a"}]},
            {},
            "defaults: field 'partitions' must be a whole number >= 1, got 0",
        ),
        (
            {"defaults": {"configs": {"X": 1}}, "topics": [{"name": "a"}]},
            {},
            "defaults: field 'configs': 'X' is not a Kafka topic config name",
        ),
        (
            {
                "topics": [
                    {"name": "ok", "partitions": 1, "replication_factor": 1},
                    {"name": "b", "partitions": -2, "land": "no"},
                ]
            },
            {},
            "topic 'b': field 'land' must be true or false, got 'no' (and 1 more schema error(s))",
        ),
    ],
)
def test_invalid_files_name_the_topic_and_the_field(data, env, message):
    with pytest.raises(TopicsFileError) as err:
        parse_topics(data, env=env)
    assert message in str(err.value)


def test_the_first_schema_error_in_file_order_is_reported():
    data = {"topics": [{"name": "a", "partitions": 0, "land": "x"}, {"name": "b", "partitions": 0}]}
    with pytest.raises(TopicsFileError) as err:
        parse_topics(data, env={})
    assert str(err.value) == (
        "topic 'a': field 'land' must be true or false, got 'x' (and 2 more schema error(s))"
    )


def test_the_schema_is_a_valid_draft_2020_12_schema():
    Draft202012Validator.check_schema(topics.TOPICS_SCHEMA)
    assert topics.TOPICS_SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_the_schema_file_for_editors_is_the_loaders_schema():
    """dags/topics.schema.json is written from TOPICS_SCHEMA: `python -m streamlab.topics --write-schema`."""
    text = topics.SCHEMA_FILE.read_text(encoding="utf-8")
    assert json.loads(text) == topics.TOPICS_SCHEMA
    assert text == topics.schema_json()


def test_the_topics_file_names_its_schema_and_follows_it():
    text = topics.DEFAULT_TOPICS_FILE.read_text(encoding="utf-8")
    assert text.splitlines()[0] == f"# yaml-language-server: $schema={topics.SCHEMA_FILE.name}"
    assert topics.SCHEMA_FILE.parent == topics.DEFAULT_TOPICS_FILE.parent
    schema = json.loads(topics.SCHEMA_FILE.read_text(encoding="utf-8"))
    assert list(Draft202012Validator(schema).iter_errors(yaml.safe_load(text))) == []


def test_write_schema_writes_the_file(tmp_path, monkeypatch):
    monkeypatch.setattr(topics, "SCHEMA_FILE", tmp_path / "topics.schema.json")
    assert topics.main(["--write-schema"]) == 0
    assert json.loads((tmp_path / "topics.schema.json").read_text()) == topics.TOPICS_SCHEMA


def test_load_names_the_file(tmp_path):
    bad = tmp_path / "topics.yaml"
    bad.write_text(
        textwrap.dedent("""
        topics:
          - name: x
            partitions: -1
            replication_factor: 1
    """)
    )
    with pytest.raises(TopicsFileError, match=rf"{bad}: topic 'x': field 'partitions'"):
        topics.load_topics(bad, env={})
    with pytest.raises(TopicsFileError, match="cannot read"):
        topics.load_topics(tmp_path / "missing.yaml", env={})
    bad.write_text("topics: [a: b: c]")
    with pytest.raises(TopicsFileError, match="not valid YAML"):
        topics.load_topics(bad, env={})


def test_topics_file_env_override(tmp_path):
    other = tmp_path / "t.yaml"
    other.write_text("topics: [{name: z, partitions: 1, replication_factor: 1}]")
    assert [t.name for t in topics.load_topics(env={"STREAMLAB_TOPICS_FILE": str(other)})] == ["z"]
