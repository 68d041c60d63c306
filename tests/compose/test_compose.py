"""Static checks of docker-compose.yaml and its Dockerfile: no Docker engine, no network.

Each check is a function returning the problems it finds in a parsed compose file. The same
function runs on the real file (expects none) and on mutated copies of it (expects some), so a
check that cannot fail shows up here as a failing negative test.

Versions are read from the project's pins, never copied: Kafka and Hadoop from jvm/pom.xml,
Spark (pyspark) and Airflow from requirements.txt.
"""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import jsonschema
import pytest
import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
COMPOSE_FILE = REPO / "docker-compose.yaml"
DOCKERFILE = REPO / "Dockerfile"
ENV_EXAMPLE = REPO / ".env.example"
# The repository keeps its own copy so the tests run without ../shared; it must stay identical.
SCHEMA_IN_REPO = HERE / "compose-spec.json"
SCHEMA_SHARED = Path(__file__).resolve().parents[3] / "shared" / "schemas" / "compose-spec.json"

# pom hadoop.version -> apache/hadoop tag. apache/hadoop publishes 3.5.0 (public compose files
# and CI scripts pin apache/hadoop:3.5.0, one of them by digest), so today this is the identity.
# A new hadoop.version needs a deliberate entry here once its image tag is confirmed to exist.
HADOOP_IMAGE_TAG = {"3.5.0": "3.5.0"}

# The connection ids the platform's DAGs use; required even while dags/ names none of them.
REQUIRED_CONN_IDS = {"kafka_default", "spark_default", "webhdfs_default"}
CONN_TYPES = {"kafka_default": "kafka", "spark_default": "spark", "webhdfs_default": "webhdfs"}
# kafka_config_id=, webhdfs_conn_id=, conn_id=, "conn_id": ... with a string literal value.
CONN_ID_RE = re.compile(r"""\b\w*(?:conn_id|config_id)["']?\s*[=:]\s*["']([A-Za-z0-9_.\-]+)["']""")

# Mounted into every Airflow container at /opt/airflow/<name>, as laid out in the repository.
AIRFLOW_MOUNTS = ("dags", "plugins", "spark_jobs", "streamlab")
IMAGE_REPO = "/opt/airflow"  # where the mounts put the repository's folders
ARCHIVE_BUILD = re.compile(r"STREAMLAB_DEPS=(\S+) python -m streamlab\.deps --python-archive")
SECRET_ENV = ("AIRFLOW__CORE__FERNET_KEY", "AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW__API__SECRET_KEY")
REQUIRED_VAR_RE = re.compile(r"\$\{([A-Z0-9_]+):\?[^}]*\}")
OK_CONDITIONS = {"service_healthy", "service_completed_successfully"}


# ---------------------------------------------------------------------------------------------
# Pins
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Pins:
    kafka: str
    hadoop: str
    hadoop_image: str | None
    scala: str
    spark: str
    airflow: str
    python: str


def requirement_pins(text: str) -> dict[str, str]:
    """name (lower-case, '-' for '_') -> version, for every `name==version` line."""
    pins = {}
    for line in text.splitlines():
        m = re.fullmatch(r"([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?\s*==\s*([^\s;#]+)", line.split("#")[0].strip())
        if m:
            pins[m.group(1).lower().replace("_", "-")] = m.group(2)
    return pins


def pom_properties(path: Path) -> dict[str, str]:
    root = ET.parse(path).getroot()
    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    props = root.find("m:properties", ns)
    return {child.tag.split("}", 1)[1]: (child.text or "").strip() for child in props}


def load_pins() -> Pins:
    req = requirement_pins((REPO / "requirements.txt").read_text())
    pom = pom_properties(REPO / "jvm" / "pom.xml")
    return Pins(
        kafka=pom["kafka.version"],
        hadoop=pom["hadoop.version"],
        hadoop_image=HADOOP_IMAGE_TAG.get(pom["hadoop.version"]),
        scala=pom["scala.binary.version"],
        spark=req["pyspark"],
        airflow=req["apache-airflow"],
        # The pins were resolved for the interpreter that runs these tests (the project venv).
        python=f"{sys.version_info.major}.{sys.version_info.minor}",
    )


PINS = load_pins()


# ---------------------------------------------------------------------------------------------
# Reading a compose file
# ---------------------------------------------------------------------------------------------
def services(doc: dict) -> dict[str, dict]:
    return doc.get("services") or {}


def env_of(svc: dict) -> dict[str, str]:
    env = svc.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def split_image(ref: str) -> tuple[str, str | None, str | None]:
    """(repository, tag, digest) of an image reference."""
    name, _, digest = ref.partition("@")
    repo, tag = name, None
    if ":" in name.rsplit("/", 1)[-1]:
        repo, tag = name.rsplit(":", 1)
    return repo, tag, digest or None


def image_repo(svc: dict) -> str | None:
    return split_image(svc["image"])[0] if svc.get("image") else None


def family(doc: dict, repo: str) -> dict[str, dict]:
    return {name: svc for name, svc in services(doc).items() if image_repo(svc) == repo}


def airflow_services(doc: dict) -> dict[str, dict]:
    """The services running the image built from the Dockerfile."""
    built = {svc.get("image") for svc in services(doc).values() if svc.get("build")}
    return {n: s for n, s in services(doc).items() if s.get("build") or s.get("image") in built}


def command_text(svc: dict) -> str:
    cmd = svc.get("command") or ""
    return " ".join(cmd) if isinstance(cmd, list) else str(cmd)


def replicas(svc: dict) -> int:
    return int((svc.get("deploy") or {}).get("replicas", 1))


def has_healthcheck(svc: dict) -> bool:
    hc = svc.get("healthcheck") or {}
    test = hc.get("test")
    return bool(test) and not hc.get("disable") and test not in ("NONE", ["NONE"])


def is_one_shot(svc: dict) -> bool:
    return svc.get("restart") == "no"


def depends_on(svc: dict) -> dict:
    deps = svc.get("depends_on") or {}
    return {d: None for d in deps} if isinstance(deps, list) else deps


def published_ports(svc: dict) -> list[tuple[str, str, str]]:
    """(host_ip, host_port, protocol) of each published port; host_port '' = chosen by Docker."""
    out = []
    for entry in svc.get("ports") or []:
        if isinstance(entry, dict):
            ip, host, proto = (
                entry.get("host_ip", ""),
                str(entry.get("published", "")),
                entry.get("protocol", "tcp"),
            )
        else:
            spec, _, proto = str(entry).partition("/")
            parts = spec.rsplit(":", 2)  # [[ip:]host:]container
            ip = parts[0] if len(parts) == 3 else ""
            host = parts[-2] if len(parts) >= 2 else ""
            proto = proto or "tcp"
        if "-" in host:
            low, high = (int(p) for p in host.split("-"))
            out += [(ip, str(p), proto) for p in range(low, high + 1)]
        else:
            out.append((ip, host, proto))
    return out


# ---------------------------------------------------------------------------------------------
# Checks: each returns a list of problems (empty = fine)
# ---------------------------------------------------------------------------------------------
def schema_problems(doc: dict, schema: dict) -> list[str]:
    # The spec declares draft-07 ($schema without the trailing '#', so name the validator).
    validator = jsonschema.Draft7Validator(schema)
    return [
        f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
        for e in sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.absolute_path)))
    ]


def image_problems(doc: dict, pins: Pins) -> list[str]:
    problems = []
    expected = {"apache/kafka": pins.kafka, "apache/hadoop": pins.hadoop_image}
    for name, svc in services(doc).items():
        ref = svc.get("image")
        if not ref:
            problems.append(f"{name}: no image")
            continue
        if "$" in ref:
            problems.append(f"{name}: image {ref!r} is interpolated, so it is not pinned here")
            continue
        repo, tag, digest = split_image(ref)
        if tag is None and digest is None:
            problems.append(f"{name}: image {ref!r} has no tag")
        elif tag == "latest":
            problems.append(f"{name}: image {ref!r} uses 'latest'")
        if repo in expected and tag != expected[repo]:
            problems.append(f"{name}: {ref!r}, expected tag {expected[repo]!r} from the pins")
        if repo == "apache/spark":
            if tag != pins.spark and not (tag or "").startswith(pins.spark + "-"):
                problems.append(f"{name}: {ref!r}, expected Spark {pins.spark} (the pyspark pin)")
            if "scala" in (tag or "") and f"scala{pins.scala}" not in tag:
                problems.append(f"{name}: {ref!r}, expected Scala {pins.scala} (jvm/pom.xml)")
        if repo == "postgres" and not re.match(r"\d+(\.\d+)?", tag or ""):
            problems.append(f"{name}: {ref!r}, expected a version tag")
        build = svc.get("build")
        if build:
            args = {
                k: str(v) for k, v in ((build.get("args") or {}) if isinstance(build, dict) else {}).items()
            }
            want = {
                "AIRFLOW_VERSION": pins.airflow,
                "SPARK_VERSION": pins.spark,
                "PYTHON_VERSION": pins.python,
            }
            for arg, value in want.items():
                if args.get(arg) != value:
                    problems.append(f"{name}: build arg {arg}={args.get(arg)!r}, expected {value!r}")
            if tag != f"{pins.airflow}-python{pins.python}":
                problems.append(
                    f"{name}: built image {ref!r}, expected tag {pins.airflow}-python{pins.python}"
                )
    for repo in ("apache/kafka", "apache/hadoop", "apache/spark", "postgres"):
        if not family(doc, repo):
            problems.append(f"no service runs {repo}")
    if not any(svc.get("build") for svc in services(doc).values()):
        problems.append("no service builds the Airflow image")
    return problems


def dockerfile_problems(text: str, pins: Pins) -> list[str]:
    problems = []
    args = dict(re.findall(r"^ARG\s+([A-Z_]+)=(\S+)", text, flags=re.M))
    for arg, value in {
        "AIRFLOW_VERSION": pins.airflow,
        "PYTHON_VERSION": pins.python,
        "SPARK_VERSION": pins.spark,
    }.items():
        if args.get(arg) != value:
            problems.append(f"Dockerfile: ARG {arg} default {args.get(arg)!r}, expected {value!r}")
    stages: set[str] = set()
    bases = []
    for line in re.findall(r"^FROM\s+(.+)$", text, flags=re.M):
        words = [w for w in line.split() if not w.startswith("--")]
        ref = re.sub(r"\$\{?([A-Z_]+)\}?", lambda m: args.get(m.group(1), m.group(0)), words[0])
        if len(words) >= 3 and words[1].lower() == "as":
            stages.add(words[2])
        if words[0] in stages:
            continue
        bases.append(ref)
        repo, tag, digest = split_image(ref)
        if "$" in ref or (tag is None and digest is None) or tag == "latest":
            problems.append(f"Dockerfile: base image {ref!r} is not pinned")
    if f"apache/airflow:{pins.airflow}-python{pins.python}" not in bases:
        problems.append(f"Dockerfile: no FROM apache/airflow:{pins.airflow}-python{pins.python}")
    if not re.search(r"pip install[^\n]*(\\\n[^\n]*)*requirements\.txt", text):
        problems.append("Dockerfile: Python packages are not installed from requirements.txt")
    if re.search(r"^[^#\n]*requirements-dev\.txt", text, flags=re.M):
        problems.append("Dockerfile: installs the test tools (requirements-dev.txt)")
    # The DAGs find the archive at .deps/python/ beside the package: /opt/airflow in the image.
    built = re.search(ARCHIVE_BUILD, text)
    if not built:
        problems.append(
            "Dockerfile: does not pack the streamlab archive (python -m streamlab.deps --python-archive)"
        )
    elif built.group(1) != f"{IMAGE_REPO}/.deps":
        problems.append(
            f"Dockerfile: packs the archive into {built.group(1)}, the DAGs look in {IMAGE_REPO}/.deps"
        )
    return problems


def healthcheck_problems(doc: dict) -> list[str]:
    problems = []
    for name, svc in services(doc).items():
        if has_healthcheck(svc):
            continue
        if not is_one_shot(svc):
            problems.append(f'{name}: no healthcheck, and not a one-shot (restart: "no")')
            continue
        for other, osvc in services(doc).items():
            dep = depends_on(osvc).get(name)
            if name in depends_on(osvc) and (dep or {}).get("condition") != "service_completed_successfully":
                problems.append(
                    f"{other}: waits for one-shot {name} other than by service_completed_successfully"
                )
    return problems


def dependency_problems(doc: dict) -> list[str]:
    problems = []
    svcs = services(doc)
    for name, svc in svcs.items():
        if isinstance(svc.get("depends_on"), list):
            problems.append(f"{name}: depends_on without conditions")
        for target, spec in depends_on(svc).items():
            if target not in svcs:
                problems.append(f"{name}: depends on unknown service {target!r}")
                continue
            if target == name:
                problems.append(f"{name}: depends on itself")
            condition = (spec or {}).get("condition")
            if condition not in OK_CONDITIONS:
                problems.append(
                    f"{name} -> {target}: condition {condition!r}, expected one of {sorted(OK_CONDITIONS)}"
                )
            if condition == "service_healthy" and not has_healthcheck(svcs[target]):
                problems.append(f"{name} -> {target}: service_healthy, but {target} has no healthcheck")
            if condition == "service_completed_successfully" and not is_one_shot(svcs[target]):
                problems.append(f"{name} -> {target}: waits for completion of a service that restarts")
            if svcs[target].get("profiles") and not svc.get("profiles"):
                problems.append(
                    f"{name} -> {target}: {target} only runs in profiles {svcs[target]['profiles']}"
                )
    # A cycle would leave `docker compose up` waiting forever.
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in depends_on(svcs.get(node, {})):
            if state.get(nxt) == 1:
                problems.append(f"dependency cycle: {' -> '.join(path + [node, nxt])}")
            elif nxt in svcs and not state.get(nxt):
                visit(nxt, path + [node])
        state[node] = 2

    for name in svcs:
        if not state.get(name):
            visit(name, [])
    return problems


def port_problems(doc: dict) -> list[str]:
    problems = []
    seen: Counter = Counter()
    for name, svc in services(doc).items():
        for ip, port, proto in published_ports(svc):
            if ip != "127.0.0.1":
                problems.append(
                    f"{name}: port {port or '(random)'}/{proto} is published on {ip or 'every interface'}"
                )
            if port:
                seen[(port, proto)] += replicas(svc)
    problems += [
        f"host port {port}/{proto} is published {n} times" for (port, proto), n in seen.items() if n > 1
    ]
    return problems


def dag_connection_ids(dags_dir: Path) -> set[str]:
    ids = set(REQUIRED_CONN_IDS)
    for path in sorted(dags_dir.rglob("*.py")):
        ids.update(CONN_ID_RE.findall(path.read_text(encoding="utf-8")))
    return ids


def connection_problems(doc: dict, conn_ids: set[str]) -> list[str]:
    airflow = airflow_services(doc)
    if not airflow:
        return ["no Airflow service"]
    envs = {"x-airflow-common": env_of(doc.get("x-airflow-common") or {})}
    envs.update({name: env_of(svc) for name, svc in airflow.items()})
    problems = []
    for where, env in envs.items():
        for conn_id in sorted(conn_ids):
            if f"AIRFLOW_CONN_{conn_id.upper()}" not in env:
                problems.append(f"{where}: no AIRFLOW_CONN_{conn_id.upper()} for connection {conn_id!r}")
        problems += [f"{where}: {p}" for p in platform_connection_problems(doc, env)]
    return problems


def platform_connection_problems(doc: dict, env: dict[str, str]) -> list[str]:
    """The three platform connections must point at this file's services."""
    problems = []
    svcs = services(doc)
    conns = {}
    for conn_id, conn_type in CONN_TYPES.items():
        raw = env.get(f"AIRFLOW_CONN_{conn_id.upper()}")
        try:
            conns[conn_id] = json.loads(raw) if raw else {}
        except ValueError:
            problems.append(f"AIRFLOW_CONN_{conn_id.upper()} is not JSON")
            continue
        if raw and conns[conn_id].get("conn_type") != conn_type:
            problems.append(
                f"{conn_id}: conn_type {conns[conn_id].get('conn_type')!r}, expected {conn_type!r}"
            )
    if "kafka_default" in conns:
        servers = (conns["kafka_default"].get("extra") or {}).get("bootstrap.servers", "")
        hosts = {s.rsplit(":", 1)[0] for s in servers.split(",") if s}
        brokers = set(family(doc, "apache/kafka"))
        if hosts != brokers:
            problems.append(
                f"kafka_default bootstraps from {sorted(hosts)}, the brokers are {sorted(brokers)}"
            )
    if "spark_default" in conns:
        spark = conns["spark_default"]
        master = svcs.get(str(spark.get("host", "")).removeprefix("spark://"))
        if master is None or "deploy.master.Master" not in command_text(master):
            problems.append(f"spark_default host {spark.get('host')!r} is not the Spark master service")
        elif f"--port {spark.get('port')}" not in command_text(master):
            problems.append(f"spark_default port {spark.get('port')!r} is not the master's --port")
        if (spark.get("extra") or {}).get("deploy-mode") != "client":
            problems.append(
                "spark_default: deploy-mode must be client (standalone cluster mode runs no Python)"
            )
    if "webhdfs_default" in conns:
        hdfs = conns["webhdfs_default"]
        namenode = svcs.get(hdfs.get("host"))
        if namenode is None or not command_text(namenode).endswith("namenode"):
            problems.append(f"webhdfs_default host {hdfs.get('host')!r} is not the NameNode service")
        if str(hdfs.get("port")) != "9870":
            problems.append(f"webhdfs_default port {hdfs.get('port')!r}, the NameNode's HTTP port is 9870")
    return problems


def mount_problems(doc: dict) -> list[str]:
    problems = []
    for name, svc in airflow_services(doc).items():
        mounts = {
            str(v).split(":")[0]: str(v).split(":")[1] for v in svc.get("volumes") or [] if isinstance(v, str)
        }
        for folder in AIRFLOW_MOUNTS:
            if mounts.get(f"./{folder}") != f"/opt/airflow/{folder}":
                problems.append(f"{name}: ./{folder} is not mounted at /opt/airflow/{folder}")
    return problems


def kafka_problems(doc: dict) -> list[str]:
    brokers = {name: env_of(svc) for name, svc in family(doc, "apache/kafka").items()}
    if len(brokers) != 3:
        return [f"expected 3 Kafka nodes, found {sorted(brokers)}"]
    problems = []
    want = {
        "KAFKA_DEFAULT_REPLICATION_FACTOR": "3",
        "KAFKA_MIN_INSYNC_REPLICAS": "2",
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR": "3",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "3",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR": "2",
    }
    node_ids = {name: env.get("KAFKA_NODE_ID") for name, env in brokers.items()}
    if len(set(node_ids.values())) != 3:
        problems.append(f"Kafka node ids are not unique: {node_ids}")
    for key in ("CLUSTER_ID", "KAFKA_CONTROLLER_QUORUM_VOTERS"):
        if len({env.get(key) for env in brokers.values()}) != 1:
            problems.append(f"{key} differs between the Kafka nodes")
    for name, env in brokers.items():
        for key, value in want.items():
            if env.get(key) != value:
                problems.append(f"{name}: {key}={env.get(key)!r}, expected {value!r}")
        if set(env.get("KAFKA_PROCESS_ROLES", "").split(",")) != {"broker", "controller"}:
            problems.append(
                f"{name}: KAFKA_PROCESS_ROLES={env.get('KAFKA_PROCESS_ROLES')!r}, expected broker,controller"
            )
        voters = dict(
            v.split("@", 1) for v in env.get("KAFKA_CONTROLLER_QUORUM_VOTERS", "").split(",") if "@" in v
        )
        if voters != {node_ids[n]: f"{n}:9093" for n in brokers}:
            problems.append(f"{name}: the controller quorum is not the 3 nodes: {voters}")
        host_ports = {port for _, port, _ in published_ports(family(doc, "apache/kafka")[name])}
        for listener in env.get("KAFKA_ADVERTISED_LISTENERS", "").split(","):
            host, _, port = listener.split("://", 1)[-1].rpartition(":")
            if host in ("localhost", "127.0.0.1") and port not in host_ports:
                problems.append(f"{name}: advertises {listener} but publishes {sorted(host_ports)}")
            elif host not in ("localhost", "127.0.0.1") and host != name:
                problems.append(f"{name}: advertises {listener}, which other containers cannot resolve")
    return problems


def hdfs_problems(doc: dict) -> list[str]:
    nodes = family(doc, "apache/hadoop")
    namenodes = [n for n, s in nodes.items() if command_text(s).endswith("namenode")]
    datanodes = [n for n, s in nodes.items() if command_text(s).endswith("datanode")]
    problems = []
    if len(namenodes) != 1:
        return [f"expected one NameNode, found {namenodes}"]
    if len(datanodes) < 2:
        problems.append(f"expected at least 2 DataNodes, found {datanodes}")
    for name in namenodes + datanodes:
        env = env_of(nodes[name])
        if env.get("HDFS-SITE.XML_dfs.replication") != "2":
            problems.append(
                f"{name}: dfs.replication={env.get('HDFS-SITE.XML_dfs.replication')!r}, expected '2'"
            )
        if env.get("CORE-SITE.XML_fs.defaultFS") != f"hdfs://{namenodes[0]}:8020":
            problems.append(
                f"{name}: fs.defaultFS={env.get('CORE-SITE.XML_fs.defaultFS')!r}, expected hdfs://{namenodes[0]}:8020"
            )
    for name in datanodes:
        # WebHDFS redirects clients to the DataNode by this name: it must be the service name.
        announced = env_of(nodes[name]).get("HDFS-SITE.XML_dfs.datanode.hostname")
        if announced != name or nodes[name].get("hostname") != name or replicas(nodes[name]) != 1:
            problems.append(
                f"{name}: announces {announced!r}; WebHDFS redirects need one replica named {name!r}"
            )
    return problems


def spark_problems(doc: dict) -> list[str]:
    nodes = family(doc, "apache/spark")
    masters = [n for n, s in nodes.items() if "deploy.master.Master" in command_text(s)]
    workers = [n for n, s in nodes.items() if "deploy.worker.Worker" in command_text(s)]
    if len(masters) != 1:
        return [f"expected one Spark master, found {masters}"]
    problems = []
    if "--port 7077" not in command_text(nodes[masters[0]]):
        problems.append(f"{masters[0]}: the master does not listen on 7077")
    if sum(replicas(nodes[w]) for w in workers) < 2:
        problems.append(
            f"expected at least 2 Spark workers, found {sum(replicas(nodes[w]) for w in workers)}"
        )
    for name in workers:
        if f"spark://{masters[0]}:7077" not in command_text(nodes[name]):
            problems.append(f"{name}: does not register with spark://{masters[0]}:7077")
    return problems


def secret_problems(doc: dict, compose_text: str, env_example: str) -> list[str]:
    problems = []
    env = env_of(doc.get("x-airflow-common") or {})
    for key in SECRET_ENV:
        if not REQUIRED_VAR_RE.fullmatch(env.get(key, "")):
            problems.append(
                f"{key} must come from a required variable (${{NAME:?message}}), found {env.get(key)!r}"
            )
    if not REQUIRED_VAR_RE.search(env.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "")):
        problems.append("the metadata DB password must come from a required variable")
    for name, svc in family(doc, "postgres").items():
        if not REQUIRED_VAR_RE.fullmatch(env_of(svc).get("POSTGRES_PASSWORD", "")):
            problems.append(f"{name}: POSTGRES_PASSWORD must come from a required variable")
    example = dict(
        line.split("=", 1)
        for line in env_example.splitlines()
        if "=" in line and not line.lstrip().startswith("#")
    )
    for var in sorted(set(REQUIRED_VAR_RE.findall(compose_text))):
        if var not in example:
            problems.append(f".env.example does not list the required variable {var}")
        elif example[var].strip():
            problems.append(f".env.example gives {var} a value: leave secrets empty there")
    return problems


# ---------------------------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def compose_text() -> str:
    return COMPOSE_FILE.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def compose(compose_text) -> dict:
    return yaml.safe_load(compose_text)


@pytest.fixture(scope="module")
def schema() -> dict:
    return json.loads((SCHEMA_IN_REPO if SCHEMA_IN_REPO.exists() else SCHEMA_SHARED).read_text())


# ---------------------------------------------------------------------------------------------
# The real files
# ---------------------------------------------------------------------------------------------
def test_schema_copy_is_identical_to_shared():
    if not SCHEMA_SHARED.exists():
        pytest.skip(f"{SCHEMA_SHARED} is not beside the repository")
    assert SCHEMA_IN_REPO.read_bytes() == SCHEMA_SHARED.read_bytes()


def test_matches_compose_specification(compose, schema):
    assert schema_problems(compose, schema) == []


def test_pins_are_known():
    assert PINS.hadoop_image, f"hadoop.version {PINS.hadoop} has no apache/hadoop tag in HADOOP_IMAGE_TAG"


def test_images_are_pinned_to_the_project_pins(compose):
    assert image_problems(compose, PINS) == []


def test_dockerfile_is_pinned_to_the_project_pins():
    assert dockerfile_problems(DOCKERFILE.read_text(encoding="utf-8"), PINS) == []


def test_every_service_is_health_checked_or_a_one_shot(compose):
    assert healthcheck_problems(compose) == []


def test_dependencies_exist_and_wait_for_health(compose):
    assert dependency_problems(compose) == []


def test_ports_are_loopback_only_and_unique(compose):
    assert port_problems(compose) == []


def test_every_dag_connection_is_defined(compose):
    assert connection_problems(compose, dag_connection_ids(REPO / "dags")) == []


def test_code_is_mounted(compose):
    assert mount_problems(compose) == []


def test_kafka_is_a_three_node_kraft_quorum(compose):
    assert kafka_problems(compose) == []


def test_hdfs_has_two_datanodes_and_replication_two(compose):
    assert hdfs_problems(compose) == []


def test_spark_is_a_master_and_two_workers(compose):
    assert spark_problems(compose) == []


def test_no_secret_is_committed(compose, compose_text):
    assert secret_problems(compose, compose_text, ENV_EXAMPLE.read_text(encoding="utf-8")) == []


def test_connections_resolve_with_airflows_own_code(compose, tmp_path):
    """The JSON connections, read by Airflow and the providers as a task would read them."""
    pytest.importorskip("airflow.providers.apache.spark")
    env = env_of(compose["x-airflow-common"])
    script = textwrap.dedent(
        """
        import json
        from airflow.providers.apache.spark.hooks.spark_submit import SparkSubmitHook
        from airflow.sdk import BaseHook
        spark = SparkSubmitHook(conn_id="spark_default")._connection
        kafka = BaseHook.get_connection("kafka_default")
        hdfs = BaseHook.get_connection("webhdfs_default")
        print(json.dumps({
            "master": spark["master"], "deploy_mode": spark["deploy_mode"],
            "bootstrap": kafka.extra_dejson.get("bootstrap.servers"),
            "hdfs": [hdfs.conn_type, hdfs.host, hdfs.port, hdfs.login],
        }))
        """
    )
    run_env = {
        "PATH": "/usr/bin:/bin",
        "AIRFLOW_HOME": str(tmp_path),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        **{k: v for k, v in env.items() if k.startswith("AIRFLOW_CONN_")},
    }
    proc = subprocess.run(
        [sys.executable, "-c", script], env=run_env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["master"] == "spark://spark-master:7077"
    assert got["deploy_mode"] == "client"
    assert got["bootstrap"] == "kafka-1:19092,kafka-2:19092,kafka-3:19092"
    assert got["hdfs"] == ["webhdfs", "namenode", 9870, "streamlab"]


# ---------------------------------------------------------------------------------------------
# The checks can fail: each mutation of a copy of the real file must be reported
# ---------------------------------------------------------------------------------------------
def _set(path, value):
    def mutate(d):
        *head, last = path
        node = d
        for key in head:
            node = node[key]
        node[last] = value

    return mutate


def _del(path):
    def mutate(d):
        *head, last = path
        node = d
        for key in head:
            node = node[key]
        del node[last]

    return mutate


def _env(service, key, value=None):
    """Set (or with None, remove) one variable of a service's environment, only there."""

    def mutate(d):
        svc = d["services"][service]
        env = dict(svc["environment"])  # the YAML anchors share the mapping: copy before editing
        if value is None:
            env.pop(key)
        else:
            env[key] = value
        svc["environment"] = env

    return mutate


def _add_port(service, port):
    return lambda d: d["services"][service].setdefault("ports", []).append(port)


# name -> (mutation of a copy of the real file, check to run, text one of its problems contains)
MUTATIONS = {
    # schema
    "restart: no unquoted (YAML false)": (
        _set(["services", "airflow-init", "restart"], False),
        "schema",
        "airflow-init/restart",
    ),
    "unknown service key": (_set(["services", "postgres", "healthcheck_"], {}), "schema", "healthcheck_"),
    # images
    "kafka image on latest": (
        _set(["services", "kafka-1", "image"], "apache/kafka:latest"),
        "image",
        "'latest'",
    ),
    "kafka image without tag": (_set(["services", "kafka-2", "image"], "apache/kafka"), "image", "no tag"),
    "kafka image not the pom version": (
        _set(["services", "kafka-3", "image"], "apache/kafka:4.0.0"),
        "image",
        f"expected tag '{PINS.kafka}'",
    ),
    "hadoop image off the pin": (
        _set(["services", "namenode", "image"], "apache/hadoop:3.4.1"),
        "image",
        "namenode: 'apache/hadoop",
    ),
    "spark image off the pyspark pin": (
        _set(["services", "spark-master", "image"], "apache/spark:4.1.1-scala2.13-java17-python3-ubuntu"),
        "image",
        "the pyspark pin",
    ),
    "spark image with another scala": (
        _set(["services", "spark-worker", "image"], f"apache/spark:{PINS.spark}-scala2.12-java17-ubuntu"),
        "image",
        f"Scala {PINS.scala}",
    ),
    "airflow build arg off the pin": (
        _set(["x-airflow-common", "build", "args", "AIRFLOW_VERSION"], "3.0.0"),
        "image",
        "AIRFLOW_VERSION='3.0.0'",
    ),
    "postgres without tag": (_set(["services", "postgres", "image"], "postgres"), "image", "no tag"),
    "interpolated image": (
        _set(["services", "postgres", "image"], "${PG_IMAGE:-postgres:17}"),
        "image",
        "interpolated",
    ),
    # health
    "kafka-2 without healthcheck": (
        _del(["services", "kafka-2", "healthcheck"]),
        "health",
        "kafka-2: no healthcheck",
    ),
    "datanode-1 healthcheck disabled": (
        _set(["services", "datanode-1", "healthcheck"], {"disable": True}),
        "health",
        "datanode-1: no healthcheck",
    ),
    "one-shot awaited as healthy": (
        _set(
            ["services", "airflow-apiserver", "depends_on"],
            {"airflow-init": {"condition": "service_healthy"}},
        ),
        "health",
        "one-shot airflow-init",
    ),
    # dependencies
    "depends on a missing service": (
        _set(["services", "datanode-2", "depends_on"], {"name-node": {"condition": "service_healthy"}}),
        "deps",
        "unknown service 'name-node'",
    ),
    "depends_on without condition": (
        _set(["services", "spark-worker", "depends_on"], ["spark-master"]),
        "deps",
        "without conditions",
    ),
    "service_started only": (
        _set(["services", "spark-worker", "depends_on"], {"spark-master": {"condition": "service_started"}}),
        "deps",
        "'service_started'",
    ),
    "waits for completion of a server": (
        _set(
            ["services", "datanode-1", "depends_on"],
            {"namenode": {"condition": "service_completed_successfully"}},
        ),
        "deps",
        "a service that restarts",
    ),
    "dependency cycle": (
        _set(["services", "spark-master", "depends_on"], {"spark-worker": {"condition": "service_healthy"}}),
        "deps",
        "cycle",
    ),
    "depends on a profile-only service": (
        _set(
            ["services", "spark-master", "depends_on"],
            {"airflow-cli": {"condition": "service_completed_successfully"}},
        ),
        "deps",
        "only runs in profiles",
    ),
    # ports
    "port on every interface": (
        _set(["services", "namenode", "ports"], ["9870:9870"]),
        "ports",
        "every interface",
    ),
    "port on 0.0.0.0 (long syntax)": (
        _set(
            ["services", "namenode", "ports"], [{"target": 9870, "published": "9870", "host_ip": "0.0.0.0"}]
        ),
        "ports",
        "on 0.0.0.0",
    ),
    "port published twice": (
        _add_port("spark-master", "127.0.0.1:8080:8081"),
        "ports",
        "8080/tcp is published 2",
    ),
    "fixed port on a scaled service": (
        _add_port("spark-worker", "127.0.0.1:8081:8081"),
        "ports",
        "8081/tcp is published 2",
    ),
    # connections and mounts
    "spark_default missing": (
        _env("airflow-scheduler", "AIRFLOW_CONN_SPARK_DEFAULT"),
        "conns",
        "airflow-scheduler: no AIRFLOW_CONN_SPARK",
    ),
    "kafka_default on one service misses a broker": (
        _env(
            "airflow-triggerer",
            "AIRFLOW_CONN_KAFKA_DEFAULT",
            '{"conn_type": "kafka", "extra": {"bootstrap.servers": "kafka-1:19092"}}',
        ),
        "conns",
        "airflow-triggerer: kafka_default bootstraps",
    ),
    "webhdfs_default on a DataNode": (
        _env(
            "airflow-scheduler",
            "AIRFLOW_CONN_WEBHDFS_DEFAULT",
            '{"conn_type": "webhdfs", "host": "datanode-1", "port": 9870}',
        ),
        "conns",
        "is not the NameNode",
    ),
    "spark_default in cluster mode": (
        _env(
            "airflow-scheduler",
            "AIRFLOW_CONN_SPARK_DEFAULT",
            '{"conn_type": "spark", "host": "spark://spark-master", "port": 7077, "extra": {"deploy-mode": "cluster"}}',
        ),
        "conns",
        "deploy-mode must be client",
    ),
    "streamlab not mounted": (
        lambda d: d["services"]["airflow-scheduler"].__setitem__(
            "volumes", [v for v in d["services"]["airflow-scheduler"]["volumes"] if "streamlab" not in v]
        ),
        "mounts",
        "./streamlab is not mounted",
    ),
    # platform shape
    "min.insync.replicas 1": (
        _env("kafka-1", "KAFKA_MIN_INSYNC_REPLICAS", "1"),
        "kafka",
        "KAFKA_MIN_INSYNC_REPLICAS='1'",
    ),
    "replication factor 1": (
        _env("kafka-3", "KAFKA_DEFAULT_REPLICATION_FACTOR", "1"),
        "kafka",
        "KAFKA_DEFAULT_REPLICATION_FACTOR='1'",
    ),
    "quorum of one": (
        _env("kafka-2", "KAFKA_CONTROLLER_QUORUM_VOTERS", "2@kafka-2:9093"),
        "kafka",
        "quorum is not the 3 nodes",
    ),
    "advertised port not published": (
        _env("kafka-1", "KAFKA_ADVERTISED_LISTENERS", "INTERNAL://kafka-1:19092,EXTERNAL://localhost:19999"),
        "kafka",
        "localhost:19999 but publishes",
    ),
    "a Kafka node removed": (_del(["services", "kafka-3"]), "kafka", "expected 3 Kafka nodes"),
    "dfs.replication 3": (
        _env("datanode-2", "HDFS-SITE.XML_dfs.replication", "3"),
        "hdfs",
        "dfs.replication='3'",
    ),
    "one DataNode": (_del(["services", "datanode-2"]), "hdfs", "at least 2 DataNodes"),
    "one Spark worker": (
        _set(["services", "spark-worker", "deploy"], {"replicas": 1}),
        "spark",
        "2 Spark workers",
    ),
    "worker registers elsewhere": (
        _set(
            ["services", "spark-worker", "command"],
            ["spark-class", "org.apache.spark.deploy.worker.Worker", "spark://x:7077"],
        ),
        "spark",
        "does not register",
    ),
    "literal fernet key": (
        _set(["x-airflow-common", "environment", "AIRFLOW__CORE__FERNET_KEY"], "abc="),
        "secrets",
        "FERNET_KEY",
    ),
}


def run_check(kind: str, doc: dict, text: str) -> list[str]:
    conn_ids = dag_connection_ids(REPO / "dags")
    example = ENV_EXAMPLE.read_text(encoding="utf-8")
    schema = json.loads(SCHEMA_IN_REPO.read_text())
    return {
        "schema": lambda: schema_problems(doc, schema),
        "image": lambda: image_problems(doc, PINS),
        "health": lambda: healthcheck_problems(doc),
        "deps": lambda: dependency_problems(doc),
        "ports": lambda: port_problems(doc),
        "conns": lambda: connection_problems(doc, conn_ids),
        "mounts": lambda: mount_problems(doc),
        "kafka": lambda: kafka_problems(doc),
        "hdfs": lambda: hdfs_problems(doc),
        "spark": lambda: spark_problems(doc),
        "secrets": lambda: secret_problems(doc, text, example),
    }[kind]()


@pytest.mark.parametrize("mutation", list(MUTATIONS), ids=list(MUTATIONS))
def test_check_catches(mutation, compose, compose_text):
    mutate, kind, needle = MUTATIONS[mutation]
    assert run_check(kind, compose, compose_text) == []
    broken = copy.deepcopy(compose)
    mutate(broken)
    problems = run_check(kind, broken, compose_text)
    assert any(needle in p for p in problems), f"{kind} check missed {mutation!r}: {problems}"


def test_secret_check_catches_a_value_in_env_example(compose, compose_text):
    example = ENV_EXAMPLE.read_text(encoding="utf-8")
    leaked = re.sub(r"^AIRFLOW_JWT_SECRET=.*$", "AIRFLOW_JWT_SECRET=s3cr3t", example, flags=re.M)
    assert leaked != example
    assert secret_problems(compose, compose_text, leaked)


def test_dockerfile_check_catches_unpinned_base():
    text = DOCKERFILE.read_text(encoding="utf-8")
    assert dockerfile_problems(text.replace("maven:3.9.11-eclipse-temurin-17", "maven:latest"), PINS)
    assert dockerfile_problems(re.sub(r"ARG AIRFLOW_VERSION=\S+", "ARG AIRFLOW_VERSION=3.0.0", text), PINS)


def test_dockerfile_check_catches_test_tools_and_a_misplaced_archive():
    text = DOCKERFILE.read_text(encoding="utf-8")
    assert dockerfile_problems(
        text.replace("/tmp/pins/requirements.txt", "/tmp/pins/requirements-dev.txt"), PINS
    )
    assert dockerfile_problems(
        text.replace("STREAMLAB_DEPS=/opt/airflow/.deps", "STREAMLAB_DEPS=/tmp/deps"), PINS
    )
    assert dockerfile_problems(text.replace("--python-archive", ""), PINS)


def test_the_image_build_of_the_archive_matches_the_mounted_sources(tmp_path):
    """The Dockerfile's command, run on what .dockerignore lets into the build context (the
    package's .py files), packs the archive of exactly the checkout's sources (mounted at run
    time), which the DAGs' check before each submit accepts as it is."""
    from streamlab import deps

    ignore = (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
    assert "*" in ignore and "!streamlab/**/*.py" in ignore
    for src in (REPO / "streamlab").rglob("*.py"):
        target = tmp_path / "ctx" / src.relative_to(REPO)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(src.read_bytes())
    deps_dir = re.search(ARCHIVE_BUILD, DOCKERFILE.read_text(encoding="utf-8")).group(1)
    env = {"PATH": os.environ["PATH"], "STREAMLAB_DEPS": str(tmp_path / deps_dir.lstrip("/"))}
    proc = subprocess.run(
        [sys.executable, "-m", "streamlab.deps", "--python-archive"],
        cwd=tmp_path / "ctx", env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    archive = tmp_path / deps_dir.lstrip("/") / "python" / "streamlab.zip"
    assert deps.archive_digest(archive) == deps.sources_digest()  # what the DAGs' check compares


def test_dag_connection_ids_are_found(tmp_path):
    (tmp_path / "a.py").write_text(
        'KafkaAdminClientHook(kafka_config_id="kafka_other")\n'
        "SparkSubmitOperator(task_id='t', conn_id='spark_big')\n"
        'WebHdfsSensor(webhdfs_conn_id="webhdfs_ha", filepath="/x")\n'
        'op_kwargs={"conn_id": "pg_meta"}\n'
    )
    assert dag_connection_ids(tmp_path) == REQUIRED_CONN_IDS | {
        "kafka_other",
        "spark_big",
        "webhdfs_ha",
        "pg_meta",
    }


def test_connection_check_catches_an_unknown_dag_connection(compose):
    assert connection_problems(compose, REQUIRED_CONN_IDS | {"kafka_other"})


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ("127.0.0.1:8080:8080", [("127.0.0.1", "8080", "tcp")]),
        ("8080:80/udp", [("", "8080", "udp")]),
        ("80", [("", "", "tcp")]),
        ("127.0.0.1::80", [("127.0.0.1", "", "tcp")]),
        ("127.0.0.1:9000-9001:9000-9001", [("127.0.0.1", "9000", "tcp"), ("127.0.0.1", "9001", "tcp")]),
        ({"target": 80, "published": 8080, "host_ip": "127.0.0.1"}, [("127.0.0.1", "8080", "tcp")]),
    ],
)
def test_published_ports_parses_both_syntaxes(entry, expected):
    assert published_ports({"ports": [entry]}) == expected
