"""Where the local stack lives and which ports it uses.

One source of truth for the stack manager, the `bin/` wrappers, the tests and the benchmarks.
Everything is explicit and overridable from the environment, so a test session can run an
isolated stack (its own state folder and free ports) beside a developer's.

    STREAMLAB_PROFILE         `local` (default: one node of each) or `cluster` (3 Kafka brokers,
                              2 DataNodes, a Spark standalone master and worker)
    STREAMLAB_HOME            state folder (default: <repo>/var, or <repo>/var-cluster)
    STREAMLAB_DEPS            downloaded jars (default: <repo>/.deps)
    STREAMLAB_PORT_<KEY>      e.g. STREAMLAB_PORT_KAFKA=19092 (each service module of
                              streamlab/stack/ declares its port keys and defaults in PORTS)
    STREAMLAB_SPARK_MASTER    master of spark_default (default: local[2])
    STREAMLAB_AIRFLOW_PARALLELISM  task slots (default: 3, sized for 2 cores)

The ports a stack was started with are saved in `<home>/stack.json`; later commands read them
from there, so `make status` or `bin/kafka-topics.sh` find a stack started with other ports.
"""

from __future__ import annotations

import json
import os
import random
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

PROFILES = ("local", "cluster")

HOST = "127.0.0.1"  # every server of the local stack listens on loopback only


def free_ports(n: int) -> list[int]:
    """`n` distinct ports free on HOST now, for an isolated stack (tests, benchmarks).

    They are drawn below the kernel's ephemeral range. A port from that range (bind to port 0)
    can go to another process's outgoing connection before the service meant to get it binds:
    a Kafka broker of the cluster profile lost its port that way in a full test run.
    """
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    candidates = list(range(max(1024, low - 12000), low))
    random.shuffle(candidates)
    ports: list[int] = []
    for port in candidates:
        with socket.socket() as s:
            try:
                s.bind((HOST, port))
            except OSError:
                continue
        ports.append(port)
        if len(ports) == n:
            return ports
    raise RuntimeError(f"fewer than {n} free ports on {HOST} below {low}")


def _env_port(name: str) -> int | None:
    value = os.environ.get(f"STREAMLAB_PORT_{name.upper()}")
    if value is None or value == "":
        return None
    try:
        port = int(value)
    except ValueError:
        raise SystemExit(f"STREAMLAB_PORT_{name.upper()}={value!r} is not a port number") from None
    if not 0 < port < 65536:
        raise SystemExit(f"STREAMLAB_PORT_{name.upper()}={port} is outside 1..65535")
    return port


@dataclass(frozen=True)
class KafkaNode:
    node_id: int
    service: str  # process name in the stack
    port: str  # key in StackConfig.ports
    controller_port: str


@dataclass(frozen=True)
class DataNode:
    service: str
    conf: str  # folder name under conf/
    port: str
    http_port: str
    ipc_port: str


@dataclass(frozen=True)
class StackConfig:
    home: Path
    ports: dict[str, int] = field(default_factory=dict)
    profile: str = "local"
    deps: Path = REPO / ".deps"
    spark_master: str = "local[2]"
    # The streaming job holds a slot for good; two Spark jobs besides it are what 2 cores take.
    # Each slot is a LocalExecutor worker, all forked when the executor starts (~150 MiB RSS each).
    airflow_parallelism: int = 3

    # ---- construction -------------------------------------------------------------------
    @classmethod
    def load(cls, home: str | Path | None = None) -> StackConfig:
        """Config from, in order: explicit/env overrides, `<home>/stack.json`, defaults."""
        wanted = os.environ.get("STREAMLAB_PROFILE") or None
        if wanted is not None and wanted not in PROFILES:
            raise SystemExit(f"STREAMLAB_PROFILE={wanted!r}: choose one of {', '.join(PROFILES)}")
        default_home = REPO / ("var-cluster" if wanted == "cluster" else "var")
        home = Path(home or os.environ.get("STREAMLAB_HOME") or default_home).resolve()
        saved: dict = {}
        state_file = home / "stack.json"
        if state_file.exists():
            try:
                saved = json.loads(state_file.read_text())
            except ValueError:
                saved = {}  # a half-written file from an interrupted `up`: defaults apply
        from streamlab.stack.registry import port_defaults  # the services declare their ports

        ports = {}
        for name, (default, _) in port_defaults().items():
            ports[name] = _env_port(name) or saved.get("ports", {}).get(name) or default
        profile = wanted or saved.get("profile") or "local"
        if wanted and saved.get("profile") and saved["profile"] != wanted:
            raise SystemExit(
                f"{home} holds a {saved['profile']} stack, not {wanted}: use another STREAMLAB_HOME "
                "or `make clean` it first."
            )
        return cls(
            home=home,
            ports=ports,
            profile=profile,
            deps=Path(os.environ.get("STREAMLAB_DEPS") or REPO / ".deps").resolve(),
            spark_master=os.environ.get("STREAMLAB_SPARK_MASTER")
            or saved.get("spark_master")
            or ("" if profile == "cluster" else "local[2]"),
            airflow_parallelism=int(
                os.environ.get("STREAMLAB_AIRFLOW_PARALLELISM") or saved.get("airflow_parallelism") or 3
            ),
        )

    def save(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        tmp = self.home / "stack.json.tmp"
        tmp.write_text(
            json.dumps(
                {
                    "profile": self.profile,
                    "ports": self.ports,
                    "spark_master": self.spark_master,
                    "airflow_parallelism": self.airflow_parallelism,
                },
                indent=2,
            )
        )
        tmp.replace(self.home / "stack.json")

    # ---- topology -----------------------------------------------------------------------
    @property
    def cluster(self) -> bool:
        return self.profile == "cluster"

    @property
    def kafka_nodes(self) -> list[KafkaNode]:
        if not self.cluster:
            return [KafkaNode(1, "kafka", "kafka", "kafka_controller")]
        return [
            KafkaNode(1, "kafka-1", "kafka", "kafka_controller"),
            KafkaNode(2, "kafka-2", "kafka_2", "kafka_controller_2"),
            KafkaNode(3, "kafka-3", "kafka_3", "kafka_controller_3"),
        ]

    @property
    def datanodes(self) -> list[DataNode]:
        if not self.cluster:
            return [DataNode("datanode", "hadoop", "datanode", "datanode_http", "datanode_ipc")]
        return [
            DataNode("datanode-1", "hadoop", "datanode", "datanode_http", "datanode_ipc"),
            DataNode("datanode-2", "hadoop-dn2", "datanode_2", "datanode_2_http", "datanode_2_ipc"),
        ]

    @property
    def replication(self) -> int:
        """Default replication of Kafka topics and HDFS blocks."""
        return 3 if self.cluster else 1

    # ---- addresses ----------------------------------------------------------------------
    @property
    def kafka_bootstrap(self) -> str:
        return ",".join(f"{HOST}:{self.ports[n.port]}" for n in self.kafka_nodes)

    @property
    def spark_master_url(self) -> str:
        return f"spark://{HOST}:{self.ports['spark_master']}"

    @property
    def hdfs_uri(self) -> str:
        return f"hdfs://{HOST}:{self.ports['namenode_rpc']}"

    @property
    def webhdfs_url(self) -> str:
        return f"http://{HOST}:{self.ports['namenode_http']}"

    @property
    def airflow_url(self) -> str:
        return f"http://{HOST}:{self.ports['airflow_api']}"

    def metadata_db_url(self, password: str) -> str:
        """Airflow's metadata database: the stack's PostgreSQL (streamlab/stack/postgres.py)."""
        return f"postgresql+psycopg2://airflow:{password}@{HOST}:{self.ports['postgres']}/airflow"

    # ---- folders ------------------------------------------------------------------------
    @property
    def conf_dir(self) -> Path:
        return self.home / "conf"

    @property
    def log_dir(self) -> Path:
        return self.home / "log"

    @property
    def run_dir(self) -> Path:
        return self.home / "run"

    @property
    def airflow_home(self) -> Path:
        return self.home / "airflow"

    def jars(self, group: str) -> Path:
        """Folder of one resolved classpath: kafka, hadoop or spark-kafka."""
        return self.deps / "jars" / group

    @property
    def kafka_home(self) -> Path:
        """`$KAFKA_HOME` for the lab's lines: libs/ and bin/ (made by `make deps`)."""
        return self.deps / "kafka-home"

    @property
    def venv_bin(self) -> Path:
        # The interpreter running this code is the project's venv (Makefile guarantees it).
        return Path(sys.executable).parent

    @property
    def admin_password_file(self) -> Path:
        return self.airflow_home / "simple_auth_manager_passwords.json.generated"

    def admin_credentials(self) -> tuple[str, str]:
        """(user, password) of the Airflow admin, generated by the api-server on first start."""
        data = json.loads(self.admin_password_file.read_text())
        user, password = next(iter(data.items()))
        return user, password

    # ---- connections and environment ----------------------------------------------------
    def airflow_connections(self) -> dict[str, str]:
        """AIRFLOW_CONN_* variables: the only place hosts and ports reach the DAGs."""
        return {
            "AIRFLOW_CONN_KAFKA_DEFAULT": json.dumps(
                {"conn_type": "kafka", "extra": {"bootstrap.servers": self.kafka_bootstrap}}
            ),
            "AIRFLOW_CONN_SPARK_DEFAULT": json.dumps(
                {
                    "conn_type": "spark",
                    "host": self.spark_master or self.spark_master_url,
                    "extra": {"deploy-mode": "client", "spark-binary": "spark-submit"},
                }
            ),
            "AIRFLOW_CONN_WEBHDFS_DEFAULT": json.dumps(
                {
                    "conn_type": "webhdfs",
                    "host": HOST,
                    "port": self.ports["namenode_http"],
                    "login": "streamlab",
                }
            ),
        }

    def secrets(self, create: bool = False) -> dict[str, str]:
        """Per-stack generated keys and passwords, kept in the state folder. Only `up` creates
        them (`create=True`): reading the configuration writes nothing."""
        import base64
        import secrets as _secrets

        path = self.airflow_home / "secrets.json"
        values = json.loads(path.read_text()) if path.exists() else {}
        wanted = {
            "fernet_key": lambda: base64.urlsafe_b64encode(_secrets.token_bytes(32)).decode(),
            "jwt_secret": lambda: _secrets.token_urlsafe(32),
            "api_secret_key": lambda: _secrets.token_urlsafe(32),
            "postgres_password": lambda: _secrets.token_hex(24),  # hex: safe inside a URL
        }
        if not create or set(wanted) <= set(values):
            return values
        for key, make in wanted.items():
            values.setdefault(key, make())
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(values))
        tmp.chmod(0o600)
        tmp.replace(path)
        return values

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """Environment for anything that runs against this stack (servers, CLIs, Spark jobs).

        STREAMLAB_STACK_ID marks every process of the stack, so `down` can find the ones
        that escaped their process group (spark-submit JVMs started by Airflow tasks).
        """
        env = dict(os.environ if base is None else base)
        s = self.secrets()
        af = self.airflow_home
        env.update(
            {
                "STREAMLAB_HOME": str(self.home),
                "STREAMLAB_STACK_ID": str(self.home),
                "STREAMLAB_DEPS": str(self.deps),  # jars and the Spark jobs' package archive
                "PATH": f"{self.venv_bin}{os.pathsep}{env.get('PATH', '')}",
                "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p),
                "KAFKA_HOME": str(self.kafka_home),
                "HADOOP_CONF_DIR": str(self.conf_dir / "hadoop"),
                "SPARK_CONF_DIR": str(self.conf_dir / "spark"),
                "SPARK_LOCAL_IP": HOST,
                "PYSPARK_PYTHON": sys.executable,
                "PYSPARK_DRIVER_PYTHON": sys.executable,
                "AIRFLOW_HOME": str(af),
                "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
                "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
                "AIRFLOW__CORE__PARALLELISM": str(self.airflow_parallelism),
                "AIRFLOW__CORE__FERNET_KEY": s.get("fernet_key", ""),
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.airflow_url}/execution/",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(self.admin_password_file),
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.metadata_db_url(s.get("postgres_password", "")),
                "AIRFLOW__API__HOST": HOST,
                "AIRFLOW__API__PORT": str(self.ports["airflow_api"]),
                "AIRFLOW__API__BASE_URL": self.airflow_url,
                "AIRFLOW__API__WORKERS": "1",
                "AIRFLOW__API__SECRET_KEY": s.get("api_secret_key", ""),
                "AIRFLOW__API_AUTH__JWT_SECRET": s.get("jwt_secret", ""),
                # New DAG files show up within seconds rather than the 5-minute default.
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "15",
                "AIRFLOW__SCHEDULER__MIN_FILE_PROCESS_INTERVAL": "30",
            }
        )
        env.update(self.airflow_connections())
        # glibc gives a process up to 8 malloc arenas per core, one per busy thread, each keeping
        # what it freed: the JVMs (RocksDB, Netty) and Airflow's threads held that as RSS.
        env.setdefault("MALLOC_ARENA_MAX", "2")
        # Java 17 takes its default charset from the locale: without one it is ASCII, and javac
        # rejects the lab's SimpleProducer.java (an "é" in a comment). Python itself sets
        # LC_CTYPE=C.UTF-8 (PEP 538) when it finds no locale: then the shell has none either.
        user_locale = os.environ.get("LC_ALL") or os.environ.get("LANG")
        if not user_locale and os.environ.get("LC_CTYPE", "C.UTF-8") == "C.UTF-8":
            env["LC_CTYPE"] = "C.UTF-8"
        # Children that load StackConfig again (bin/ wrappers, spark-submit) must get this very
        # stack, even if the parent's environment named another one.
        env["STREAMLAB_PROFILE"] = self.profile
        env.update({f"STREAMLAB_PORT_{name.upper()}": str(port) for name, port in self.ports.items()})
        if self.cluster:
            # Topics file defaults for a replicated cluster (see dags/topics.yaml).
            env.setdefault("STREAMLAB_TOPIC_REPLICATION_FACTOR", "3")
            env.setdefault("STREAMLAB_TOPIC_MIN_ISR", "2")
        return env
