"""Kafka topics as code: load `dags/topics.yaml`, compare it with the cluster, apply the difference.

Three layers, so the decisions can be tested without a broker:

- `load_topics(path)` reads and validates the file into `TopicSpec`s: first against the JSON
  Schema `TOPICS_SCHEMA` (also written out as dags/topics.schema.json, for editors), then the rules
  a schema cannot say; errors name the file, the topic and the field. With the environment
  overrides of the cluster profile (`STREAMLAB_TOPIC_REPLICATION_FACTOR`, `STREAMLAB_TOPIC_MIN_ISR`).
- `plan(desired, actual)` is pure: the list of `Action`s that would bring the cluster to the file.
  Missing topic -> create; more partitions asked -> add partitions; config that differs -> set it;
  topic-level override not in the file -> delete it (back to the broker default). Fewer partitions
  or another replication factor -> a *drift* action, which is never applied.
- `apply(admin, desired)` reads the cluster (`describe_cluster_topics`), applies the plan with a
  confluent_kafka `AdminClient` (the one `KafkaAdminClientHook(...).get_conn` returns), re-reads
  the cluster until it matches, and returns a `ProvisionReport`. Any drift raises `TopicDriftError`
  after the safe changes were made: a mismatch never passes silently.

Command line (the DAG `kafka_topics_provision` does the same through the Airflow connection):

    python -m streamlab.topics [--file dags/topics.yaml] [--bootstrap-servers HOST:PORT] [--dry-run]
    python -m streamlab.topics --write-schema    # dags/topics.schema.json from TOPICS_SCHEMA
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]
DEFAULT_TOPICS_FILE = REPO / "dags" / "topics.yaml"

ENV_TOPICS_FILE = "STREAMLAB_TOPICS_FILE"
ENV_REPLICATION_FACTOR = "STREAMLAB_TOPIC_REPLICATION_FACTOR"
ENV_MIN_ISR = "STREAMLAB_TOPIC_MIN_ISR"
MIN_ISR_CONFIG = "min.insync.replicas"

VALUE_FORMATS = ("text", "bytes")
_TOPIC_NAME = r"^[A-Za-z0-9._-]{1,249}$"
_CONFIG_NAME = r"^[a-z][a-z0-9._-]*$"

# The structural rules of the topics file, in one place: JSON Schema draft 2020-12, checked with
# jsonschema before anything else. It lives here, in the package, because the package is what
# every reader has (DAG parsing, tasks, and the Spark jobs, which get it as a zip of .py files);
# dags/topics.schema.json is the same schema written out for editors (yaml-language-server), and
# a unit test keeps the two equal. What a schema cannot say stays in `parse_topics`: defaults
# merging, environment overrides, name collisions, min.insync.replicas <= replication factor.
_POSITIVE_INT = {"type": "integer", "minimum": 1}
_CONFIGS = {
    "type": ["object", "null"],
    "description": "Kafka topic configs, sent to Kafka as strings (true/false for booleans).",
    "propertyNames": {"type": "string", "pattern": _CONFIG_NAME},
    "additionalProperties": {"type": ["string", "number", "boolean"]},
}
TOPICS_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "streamlab topics file (dags/topics.yaml)",
    "description": "Kafka topics as code, applied by DAG kafka_topics_provision (streamlab/topics.py "
    "holds the source of this schema: edit it there, then run "
    "`python -m streamlab.topics --write-schema`).",
    "type": "object",
    "required": ["topics"],
    "additionalProperties": False,
    "properties": {
        "defaults": {
            "type": ["object", "null"],
            "description": "Applies to every topic that does not set the key itself.",
            "additionalProperties": False,
            "properties": {
                "partitions": _POSITIVE_INT,
                "replication_factor": _POSITIVE_INT,
                "configs": _CONFIGS,
            },
        },
        "topics": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["name"],
                "additionalProperties": False,
                "properties": {
                    "name": {
                        "type": "string",
                        "pattern": _TOPIC_NAME,
                        # "\n": Python's `$` (jsonschema) also matches before a final newline.
                        "not": {"anyOf": [{"enum": [".", ".."]}, {"pattern": "\n"}]},
                    },
                    "partitions": _POSITIVE_INT,
                    "replication_factor": _POSITIVE_INT,
                    "configs": _CONFIGS,
                    "land": {
                        "type": "boolean",
                        "description": "true = landed into HDFS by DAG kafka_to_hdfs_landing.",
                    },
                    "value_format": {
                        "enum": list(VALUE_FORMATS),
                        "description": "text = UTF-8 lines, bytes = opaque (default text).",
                    },
                },
            },
        },
    },
}
SCHEMA_FILE = REPO / "dags" / "topics.schema.json"

# What a field must be, for the error messages (the schema says it to the validator).
_EXPECTED = {
    "name": "1-249 characters of [A-Za-z0-9._-]",
    "partitions": "a whole number >= 1",
    "replication_factor": "a whole number >= 1",
    "configs": "a mapping of config name to value",
    "land": "true or false",
    "value_format": f"one of {list(VALUE_FORMATS)}",
}

# Action kinds. The first four are applied; DRIFT is only reported (and fails the run).
CREATE = "create"
ADD_PARTITIONS = "add_partitions"
SET_CONFIG = "set_config"
DELETE_CONFIG = "delete_config"
DRIFT = "drift"


class TopicsFileError(ValueError):
    """The topics file is missing, not YAML, or does not follow the schema."""


class TopicProvisionError(RuntimeError):
    """Kafka refused a change, or the cluster did not converge to the file."""


class TopicDriftError(TopicProvisionError):
    """The cluster differs from the file in a way this tool must not fix by itself."""

    def __init__(self, report: ProvisionReport):
        self.report = report
        drifts = "\n".join(f"  - {a.describe()}" for a in report.drifts)
        super().__init__(
            f"{len(report.drifts)} topic drift(s) that need a human "
            f"(the file was not applied to these fields):\n{drifts}"
        )


# ---- the desired state: the file ------------------------------------------------------------


@dataclass(frozen=True)
class TopicSpec:
    """One topic as the file wants it. `configs` values are the strings sent to Kafka."""

    name: str
    partitions: int
    replication_factor: int
    configs: dict[str, str] = field(default_factory=dict, hash=False)
    land: bool = False
    value_format: str = "text"


def _where(index: int, name: Any) -> str:
    return f"topic {name!r}" if isinstance(name, str) and name else f"topics[{index}]"


def _positive_int(value: Any, what: str) -> int:
    """For the values the schema does not see: environment variables and min.insync.replicas."""
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value.strip())
        else:
            raise TopicsFileError(f"{what} must be a whole number >= 1, got {value!r}")
    if value < 1:
        raise TopicsFileError(f"{what} must be a whole number >= 1, got {value!r}")
    return value


def _config_value(value: str | int | float | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return normalize_config_value(str(value))


def normalize_config_value(value: str) -> str:
    """Kafka lists (e.g. `cleanup.policy: compact, delete`) come back without spaces."""
    return ",".join(part.strip() for part in value.split(",")) if "," in value else value.strip()


def _configs(raw: Mapping[str, Any] | None) -> dict[str, str]:
    return {key: _config_value(value) for key, value in (raw or {}).items()}


def _env_int(env: Mapping[str, str], var: str) -> int | None:
    raw = env.get(var, "")
    if raw.strip() == "":
        return None
    return _positive_int(raw, f"environment variable {var}")


def _pick(raw: Mapping[str, Any], defaults: Mapping[str, Any], key: str, where: str) -> Any:
    value = raw.get(key, defaults.get(key))
    if value is None:
        raise TopicsFileError(f"{where}: field '{key}' is required (here or in defaults:)")
    return value


def _path_key(part: str | int) -> tuple[int, str | int]:
    return (0, part) if isinstance(part, int) else (1, str(part))


def _schema_message(error: Any, data: Any) -> str:
    """One jsonschema `ValidationError` as a sentence naming the topic (or `defaults`) and the field."""
    path = list(error.absolute_path)
    value = error.instance
    if not path:
        if error.validator == "additionalProperties":
            allowed = sorted(error.schema["properties"])
            unknown = sorted(map(str, set(value) - set(allowed)))
            return f"unknown top-level key(s) {unknown}; allowed: {allowed}"
        if error.validator == "type":
            return "the topics file must be a mapping with a `topics:` list"
        return "`topics:` must be a non-empty list"  # required
    if path == ["topics"]:
        return "`topics:` must be a non-empty list"
    if path[0] == "topics":
        index = path[1]
        topic = data["topics"][index]
        owner = _where(index, topic.get("name") if isinstance(topic, Mapping) else None)
        if len(path) == 2 and error.validator == "type":
            return f"topics[{index}] must be a mapping, got {value!r}"
    else:
        owner = "defaults"
        if len(path) == 1 and error.validator == "type":
            return f"defaults must be a mapping, got {value!r}"
    rest = path[2:] if path[0] == "topics" else path[1:]

    if not rest:  # the topic (or defaults) mapping itself
        if error.validator == "additionalProperties":
            allowed = sorted(error.schema["properties"])
            unknown = sorted(map(str, set(value) - set(allowed)))
            what = "unknown field(s)" if owner != "defaults" else "unknown key(s)"
            return f"{owner}: {what} {unknown}; allowed: {allowed}"
        if error.validator == "required":
            missing = [key for key in error.validator_value if key not in value]
            return f"{owner}: field '{missing[0]}' is required"
        return f"{owner}: {error.message}"
    field = rest[0]
    if field == "configs" and len(rest) == 1 and "propertyNames" in error.schema_path:
        return f"{owner}: field 'configs': {value!r} is not a Kafka topic config name"
    if field == "configs" and len(rest) == 2:
        return (
            f"{owner}: field 'configs'.{rest[1]} must be a string, a number or true/false, "
            f"got {type(value).__name__} {value!r}"
        )
    return f"{owner}: field '{field}' must be {_EXPECTED.get(field, error.message)}, got {value!r}"


def validate_topics_document(data: Any) -> None:
    """Check the parsed YAML document against `TOPICS_SCHEMA`; the first error (in file order)
    is raised as a `TopicsFileError` naming the topic and the field."""
    from jsonschema import Draft202012Validator  # lazy: the Spark executors never validate

    validator = Draft202012Validator(TOPICS_SCHEMA)
    errors = sorted(validator.iter_errors(data), key=lambda e: [_path_key(p) for p in e.absolute_path])
    if errors:
        more = f" (and {len(errors) - 1} more schema error(s))" if len(errors) > 1 else ""
        raise TopicsFileError(_schema_message(errors[0], data) + more)


def parse_topics(data: Any, env: Mapping[str, str] | None = None) -> list[TopicSpec]:
    """Validate the parsed YAML document (`TOPICS_SCHEMA`, then what a schema cannot say) and
    apply defaults and environment overrides."""
    env = os.environ if env is None else env
    validate_topics_document(data)
    defaults = data.get("defaults") or {}
    default_configs = _configs(defaults.get("configs"))

    rf_override = _env_int(env, ENV_REPLICATION_FACTOR)
    min_isr_override = _env_int(env, ENV_MIN_ISR)

    specs: list[TopicSpec] = []
    seen: dict[str, str] = {}
    for index, raw in enumerate(data["topics"]):
        name = raw["name"]
        where = _where(index, name)
        # Kafka refuses topics whose names differ only by '.' vs '_' (they collide in metrics).
        collision_key = name.replace(".", "_")
        if collision_key in seen:
            raise TopicsFileError(
                f"{where}: field 'name' collides with topic {seen[collision_key]!r} "
                "(declared twice, or differs only by '.' and '_')"
            )
        seen[collision_key] = name

        partitions = int(_pick(raw, defaults, "partitions", where))
        replication = int(_pick(raw, defaults, "replication_factor", where))
        if rf_override is not None:
            replication = rf_override
        configs = {**default_configs, **_configs(raw.get("configs"))}
        if min_isr_override is not None:
            configs[MIN_ISR_CONFIG] = str(min_isr_override)
        if MIN_ISR_CONFIG in configs:
            min_isr = _positive_int(configs[MIN_ISR_CONFIG], f"{where}: config '{MIN_ISR_CONFIG}'")
            if min_isr > replication:
                raise TopicsFileError(
                    f"{where}: config '{MIN_ISR_CONFIG}'={min_isr} is larger than the replication "
                    f"factor {replication}: every acks=all write would be refused"
                )
        land = raw.get("land", False)
        value_format = raw.get("value_format", "text")
        specs.append(TopicSpec(name, partitions, replication, configs, land, value_format))
    return specs


def schema_json() -> str:
    """`TOPICS_SCHEMA` as the text of dags/topics.schema.json."""
    return json.dumps(TOPICS_SCHEMA, indent=2) + "\n"


def topics_file(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    return Path(path or env.get(ENV_TOPICS_FILE) or DEFAULT_TOPICS_FILE)


def load_topics(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> list[TopicSpec]:
    """Read and validate the topics file (default: `$STREAMLAB_TOPICS_FILE` or dags/topics.yaml)."""
    path = topics_file(path, env)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise TopicsFileError(f"{path}: cannot read the topics file: {err}") from err
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise TopicsFileError(f"{path}: not valid YAML: {err}") from err
    try:
        return parse_topics(data, env)
    except TopicsFileError as err:
        raise TopicsFileError(f"{path}: {err}") from None


def landed_topics(path: str | Path | None = None) -> list[TopicSpec]:
    """The topics with `land: true` (for the HDFS landing DAG)."""
    return [t for t in load_topics(path) if t.land]


# ---- the actual state: the cluster ----------------------------------------------------------


@dataclass(frozen=True)
class TopicState:
    """One topic as the cluster has it.

    `configs` holds the effective value of every config (whatever its source); `overrides` the
    names set on the topic itself (source DYNAMIC_TOPIC_CONFIG). `replication_factor` is the
    largest replica count over the partitions, `min_replicas` the smallest (None = the same).
    """

    name: str
    partitions: int
    replication_factor: int
    configs: dict[str, str] = field(default_factory=dict, hash=False)
    overrides: frozenset[str] = frozenset()
    min_replicas: int | None = None


# ---- the plan -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Action:
    """One step of the plan. `field` is 'topic', 'partitions', 'replication_factor' or a config."""

    topic: str
    kind: str
    field: str
    current: str | None = None
    desired: str | None = None

    @property
    def is_drift(self) -> bool:
        return self.kind == DRIFT

    def describe(self) -> str:
        if self.kind == CREATE:
            return f"{self.topic}: create ({self.desired})"
        if self.kind == ADD_PARTITIONS:
            return f"{self.topic}: partitions {self.current} -> {self.desired}"
        if self.kind == SET_CONFIG:
            return f"{self.topic}: config {self.field} {self.current!r} -> {self.desired!r}"
        if self.kind == DELETE_CONFIG:
            return f"{self.topic}: config {self.field} override {self.current!r} removed (broker default)"
        why = {
            "partitions": "Kafka cannot remove partitions; recreate the topic or fix the file",
            "replication_factor": "change it with a partition reassignment, or fix the file",
        }.get(self.field, "fix the cluster or the file")
        return (
            f"{self.topic}: DRIFT {self.field} is {self.current} on the cluster but "
            f"{self.desired} in the file ({why})"
        )

    def to_dict(self) -> dict[str, str | None]:
        return {
            "topic": self.topic,
            "action": self.kind,
            "field": self.field,
            "current": self.current,
            "desired": self.desired,
        }


def plan(desired: Sequence[TopicSpec], actual: Mapping[str, TopicState]) -> list[Action]:
    """Actions that bring `actual` to `desired`, in file order; topics not in the file are ignored."""
    actions: list[Action] = []
    for spec in desired:
        state = actual.get(spec.name)
        if state is None:
            configs = ", ".join(f"{k}={v}" for k, v in sorted(spec.configs.items()))
            what = f"partitions={spec.partitions}, replication_factor={spec.replication_factor}"
            actions.append(
                Action(spec.name, CREATE, "topic", None, what + (f", {configs}" if configs else ""))
            )
            continue

        if spec.partitions > state.partitions:
            actions.append(
                Action(spec.name, ADD_PARTITIONS, "partitions", str(state.partitions), str(spec.partitions))
            )
        elif spec.partitions < state.partitions:
            actions.append(
                Action(spec.name, DRIFT, "partitions", str(state.partitions), str(spec.partitions))
            )

        low = state.replication_factor if state.min_replicas is None else state.min_replicas
        if (low, state.replication_factor) != (spec.replication_factor, spec.replication_factor):
            current = (
                str(state.replication_factor)
                if low == state.replication_factor
                else f"{low}..{state.replication_factor} (uneven)"
            )
            actions.append(
                Action(spec.name, DRIFT, "replication_factor", current, str(spec.replication_factor))
            )

        for key, value in sorted(spec.configs.items()):
            current = state.configs.get(key)
            if current is None or normalize_config_value(current) != value:
                actions.append(Action(spec.name, SET_CONFIG, key, current, value))
        for key in sorted(state.overrides - set(spec.configs)):
            actions.append(Action(spec.name, DELETE_CONFIG, key, state.configs.get(key), None))
    return actions


# ---- the report -----------------------------------------------------------------------------


@dataclass
class ProvisionReport:
    """What a run found and did. `actions` is the plan; `applied` tells if changes were made."""

    topics: list[str]
    actions: list[Action]
    applied: bool
    dry_run: bool = False

    @property
    def drifts(self) -> list[Action]:
        return [a for a in self.actions if a.is_drift]

    @property
    def changes(self) -> list[Action]:
        return [a for a in self.actions if not a.is_drift]

    @property
    def status(self) -> str:
        if self.drifts:
            return "drift"
        if not self.actions:
            return "in sync"
        return "would change" if self.dry_run else "changed"

    def summary(self) -> str:
        if not self.actions:
            return f"in sync: {len(self.topics)} topic(s) match the file, nothing to do"
        verb = "planned" if self.dry_run else "applied"
        text = f"{len(self.changes)} change(s) {verb}"
        if self.drifts:
            text += f", {len(self.drifts)} DRIFT(s) not applied"
        return text

    def table(self) -> str:
        """Fixed-width table of the actions, one per line, for task logs."""
        header = ("topic", "action", "field", "current", "desired")
        rows = [header] + [
            (
                a.topic,
                a.kind,
                a.field,
                "-" if a.current is None else a.current,
                "-" if a.desired is None else a.desired,
            )
            for a in self.actions
        ]
        if not self.actions:
            rows += [(t, "in sync", "-", "-", "-") for t in self.topics]
        widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        return "\n".join(lines + [self.summary()])

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (the DAG's XCom)."""
        return {
            "status": self.status,
            "summary": self.summary(),
            "topics": list(self.topics),
            "actions": [a.to_dict() for a in self.actions],
            "dry_run": self.dry_run,
        }


# ---- talking to Kafka -----------------------------------------------------------------------


def _source_value(source: Any) -> Any:
    return getattr(source, "value", source)


def describe_cluster_topics(admin: Any, names: Sequence[str], timeout: float = 30.0) -> dict[str, TopicState]:
    """The current state of those of `names` that exist on the cluster."""
    from confluent_kafka.admin import ConfigResource, ConfigSource, ResourceType

    deadline = time.monotonic() + timeout
    while True:
        metadata = admin.list_topics(timeout=max(1.0, deadline - time.monotonic()))
        found = {n: metadata.topics[n] for n in names if n in metadata.topics}
        pending = [n for n, t in found.items() if t.error is not None or not t.partitions]
        if not pending:
            break
        if time.monotonic() >= deadline:
            errors = ", ".join(f"{n}: {found[n].error}" for n in pending)
            raise TopicProvisionError(f"cannot read the metadata of topic(s) {errors}")
        time.sleep(0.5)  # a topic just created: leaders not elected yet

    states: dict[str, TopicState] = {}
    if not found:
        return states
    resources = [ConfigResource(ResourceType.TOPIC, n) for n in found]
    futures = admin.describe_configs(resources, request_timeout=max(1.0, deadline - time.monotonic()))
    dynamic = ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    for resource, future in futures.items():
        name = resource.name
        try:
            entries = future.result()
        except Exception as err:  # KafkaException: name the topic
            raise TopicProvisionError(f"topic {name!r}: cannot read its configs: {err}") from err
        counts = [len(p.replicas) for p in found[name].partitions.values()]
        states[name] = TopicState(
            name=name,
            partitions=len(counts),
            replication_factor=max(counts),
            min_replicas=min(counts),
            configs={k: e.value for k, e in entries.items() if e.value is not None},
            overrides=frozenset(k for k, e in entries.items() if _source_value(e.source) == dynamic),
        )
    return states


def _wait(futures: Mapping[Any, Any], what: str, errors: list[str], ignore: tuple[str, ...] = ()) -> None:
    for key, future in futures.items():
        name = getattr(key, "name", key)
        try:
            future.result()
        except Exception as err:
            kafka_error = err.args[0] if err.args else None
            code = kafka_error.name() if hasattr(kafka_error, "name") else ""
            if code in ignore:
                log.warning("topic %r: %s: %s (ignored)", name, what, code)
                continue
            reason = kafka_error.str() if hasattr(kafka_error, "str") else str(err)
            errors.append(f"topic {name!r}: {what} failed: {code or type(err).__name__}: {reason}")


def _execute(admin: Any, specs: Mapping[str, TopicSpec], actions: Sequence[Action], timeout: float) -> None:
    from confluent_kafka.admin import (
        AlterConfigOpType,
        ConfigEntry,
        ConfigResource,
        NewPartitions,
        NewTopic,
        ResourceType,
    )

    errors: list[str] = []
    creates = [
        NewTopic(
            s.name,
            num_partitions=s.partitions,
            replication_factor=s.replication_factor,
            config=dict(s.configs),
        )
        for s in (specs[a.topic] for a in actions if a.kind == CREATE)
    ]
    if creates:
        # Already exists = someone created it meanwhile; the verification re-plan judges it.
        futures = admin.create_topics(creates, operation_timeout=timeout, request_timeout=timeout)
        _wait(futures, "create", errors, ignore=("TOPIC_ALREADY_EXISTS",))

    grow = [NewPartitions(a.topic, int(a.desired)) for a in actions if a.kind == ADD_PARTITIONS]
    if grow:
        futures = admin.create_partitions(grow, operation_timeout=timeout, request_timeout=timeout)
        _wait(futures, "add partitions", errors)

    entries: dict[str, list[Any]] = {}
    for a in actions:
        if a.kind == SET_CONFIG:
            entries.setdefault(a.topic, []).append(
                ConfigEntry(a.field, a.desired, incremental_operation=AlterConfigOpType.SET)
            )
        elif a.kind == DELETE_CONFIG:
            entries.setdefault(a.topic, []).append(
                ConfigEntry(a.field, None, incremental_operation=AlterConfigOpType.DELETE)
            )
    if entries:
        resources = [
            ConfigResource(ResourceType.TOPIC, topic, incremental_configs=items)
            for topic, items in entries.items()
        ]
        futures = admin.incremental_alter_configs(resources, request_timeout=timeout)
        _wait(futures, "alter configs", errors)

    if errors:
        raise TopicProvisionError("Kafka refused some changes:\n" + "\n".join(f"  - {e}" for e in errors))


def apply(
    admin: Any,
    desired: Sequence[TopicSpec] | None = None,
    *,
    dry_run: bool = False,
    timeout: float = 30.0,
    raise_on_drift: bool = True,
) -> ProvisionReport:
    """Bring the cluster to `desired` (default: `load_topics()`) and report what was done.

    Safe changes are applied even when some topic drifted; then `TopicDriftError` is raised
    (unless `raise_on_drift=False`). After applying, the cluster is read again until it matches
    the file, else `TopicProvisionError`.
    """
    desired = load_topics() if desired is None else list(desired)
    specs = {s.name: s for s in desired}
    names = list(specs)
    actions = plan(desired, describe_cluster_topics(admin, names, timeout))
    report = ProvisionReport(topics=names, actions=actions, applied=False, dry_run=dry_run)
    for action in actions:
        (log.error if action.is_drift else log.info)("%s", action.describe())

    changes = report.changes
    if changes and not dry_run:
        _execute(admin, specs, changes, timeout)
        report.applied = True
        _verify(admin, desired, timeout)

    if report.drifts and raise_on_drift:
        raise TopicDriftError(report)
    return report


def _verify(admin: Any, desired: Sequence[TopicSpec], timeout: float) -> None:
    """Re-read the cluster until only drift (if any) is left: changes must be visible."""
    deadline = time.monotonic() + timeout
    while True:
        left = [
            a
            for a in plan(desired, describe_cluster_topics(admin, [s.name for s in desired], timeout))
            if not a.is_drift
        ]
        if not left:
            return
        if time.monotonic() >= deadline:
            raise TopicProvisionError(
                "the cluster did not converge to the file after applying; still different:\n"
                + "\n".join(f"  - {a.describe()}" for a in left)
            )
        time.sleep(0.5)


# ---- command line ---------------------------------------------------------------------------


def _default_bootstrap() -> str:
    try:
        from streamlab.config import StackConfig

        return StackConfig.load().kafka_bootstrap
    except Exception:  # no stack config: the lab's single local broker
        return "127.0.0.1:9092"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m streamlab.topics", description=__doc__.splitlines()[0])
    parser.add_argument("--file", help=f"topics file (default: ${ENV_TOPICS_FILE} or dags/topics.yaml)")
    parser.add_argument("--bootstrap-servers", default=None, help="default: the local stack's broker")
    parser.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
    parser.add_argument("--timeout", type=float, default=30.0)
    parser.add_argument(
        "--write-schema", action="store_true", help=f"write TOPICS_SCHEMA to {SCHEMA_FILE.name}, then exit"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    if args.write_schema:
        SCHEMA_FILE.write_text(schema_json(), encoding="utf-8")
        print(f"wrote {SCHEMA_FILE}")
        return 0

    from confluent_kafka.admin import AdminClient

    try:
        desired = load_topics(args.file)
    except TopicsFileError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    admin = AdminClient({"bootstrap.servers": args.bootstrap_servers or _default_bootstrap()})
    try:
        report = apply(admin, desired, dry_run=args.dry_run, timeout=args.timeout)
    except TopicDriftError as err:
        print(err.report.table())
        print(f"error: {err}", file=sys.stderr)
        return 1
    except TopicProvisionError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(report.table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
