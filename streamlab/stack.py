"""The local stack: real Kafka (KRaft), HDFS (NameNode + DataNode), PostgreSQL and Airflow 3, as processes.

    python -m streamlab.stack up      # install-free start; idempotent; waits on health checks
    python -m streamlab.stack status  # health of every service
    python -m streamlab.stack down    # graceful stop, then forceful; no orphan JVM
    python -m streamlab.stack clean   # down, then wipe the state folder
    python -m streamlab.stack env     # shell exports to run clients against the stack

Each server runs in its own process group (so a signal reaches all its children) with a pid
file in `<home>/run` and a log in `<home>/log`. All state lives under one folder
(`StackConfig.home`, `var/` by default); configuration files are regenerated on every `up`
from `StackConfig`, storage is formatted once.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from streamlab import postgres
from streamlab.config import HOST, PORT_DEFAULTS, REPO, DataNode, KafkaNode, StackConfig


class StackError(Exception):
    """A problem the user can act on; printed without a stack trace."""


# ---------------------------------------------------------------------------------------------
# Java
# ---------------------------------------------------------------------------------------------
def java_binary() -> str:
    """The `java` to use (JAVA_HOME first), checked to be Java 17 or newer."""
    java_home = os.environ.get("JAVA_HOME")
    java = str(Path(java_home) / "bin" / "java") if java_home else shutil.which("java")
    if not java or not Path(java).exists():
        raise StackError(
            "Java was not found (no JAVA_HOME and no `java` on PATH). Kafka, HDFS and Spark need "
            "Java 17 or newer: install it (Debian/Ubuntu: `apt-get install openjdk-17-jdk-headless`) "
            "or set JAVA_HOME."
        )
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30).stderr
    except OSError as exc:
        raise StackError(f"Could not run {java}: {exc}") from None
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out)
    if not match:
        raise StackError(f"Could not read the Java version from `{java} -version`:\n{out}")
    major = int(match.group(1))
    if major == 1:  # "1.8.0_392" style
        major = int(match.group(2) or 0)
    if major < 17:
        raise StackError(
            f"{java} is Java {major}; Kafka 4, Hadoop 3.5 and Spark 4 need Java 17 or newer. "
            "Install a newer JDK and point JAVA_HOME at it."
        )
    return java


# Hadoop still reflects into JDK internals on Java 17.
JDK17_OPENS = [
    "--add-opens=java.base/java.lang=ALL-UNNAMED",
    "--add-opens=java.base/java.lang.reflect=ALL-UNNAMED",
    "--add-opens=java.base/java.io=ALL-UNNAMED",
    "--add-opens=java.base/java.net=ALL-UNNAMED",
    "--add-opens=java.base/java.nio=ALL-UNNAMED",
    "--add-opens=java.base/java.util=ALL-UNNAMED",
    "--add-opens=java.base/java.util.concurrent=ALL-UNNAMED",
    "--add-opens=java.base/sun.nio.ch=ALL-UNNAMED",
    "--add-opens=java.base/sun.security.action=ALL-UNNAMED",
]


def kafka_java_cmd(cfg: StackConfig, java: str, main: str, *args: str, heap: str = "256m") -> list[str]:
    return [
        java, f"-Xmx{heap}", "-XX:+UseG1GC", "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={cfg.conf_dir / 'kafka' / 'log4j2.properties'}",
        "-cp", f"{cfg.jars('kafka')}/*", main, *args,
    ]  # fmt: skip


def hadoop_java_cmd(
    cfg: StackConfig, java: str, main: str, *args: str, heap: str = "256m", conf_name: str = "hadoop"
) -> list[str]:
    conf = cfg.conf_dir / conf_name
    return [
        java, f"-Xmx{heap}", "-XX:+UseG1GC", "-Djava.awt.headless=true", *JDK17_OPENS,
        f"-Dhadoop.log.dir={cfg.log_dir}", f"-Dlog4j.configuration=file:{conf / 'log4j.properties'}",
        "-cp", f"{conf}{os.pathsep}{cfg.jars('hadoop')}/*", main, *args,
    ]  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Configuration files (regenerated on every `up` from StackConfig)
# ---------------------------------------------------------------------------------------------
def _xml(props: dict[str, object]) -> str:
    rows = "\n".join(f"  <property><name>{k}</name><value>{v}</value></property>" for k, v in props.items())
    return f'<?xml version="1.0"?>\n<configuration>\n{rows}\n</configuration>\n'


def write_configs(cfg: StackConfig) -> None:
    p = cfg.ports
    data = cfg.home / "data"
    kafka_conf = cfg.conf_dir / "kafka"
    hadoop_conf = cfg.conf_dir / "hadoop"
    spark_conf = cfg.conf_dir / "spark"
    for d in (kafka_conf, hadoop_conf, spark_conf, cfg.log_dir, cfg.run_dir, cfg.airflow_home):
        d.mkdir(parents=True, exist_ok=True)

    voters = ",".join(f"{n.node_id}@{HOST}:{p[n.controller_port]}" for n in cfg.kafka_nodes)
    rf = cfg.replication
    for node in cfg.kafka_nodes:
        server_properties(cfg, node).write_text(
            "\n".join(
                [
                    "# Generated by streamlab.stack from StackConfig; edits are overwritten.",
                    "process.roles=broker,controller",
                    f"node.id={node.node_id}",
                    f"controller.quorum.voters={voters}",
                    f"listeners=PLAINTEXT://{HOST}:{p[node.port]},CONTROLLER://{HOST}:{p[node.controller_port]}",
                    f"advertised.listeners=PLAINTEXT://{HOST}:{p[node.port]}",
                    "controller.listener.names=CONTROLLER",
                    "inter.broker.listener.name=PLAINTEXT",
                    "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
                    f"log.dirs={kafka_data_dir(cfg, node)}",
                    "num.partitions=1",
                    f"default.replication.factor={rf}",
                    f"min.insync.replicas={min(rf, 2)}",
                    f"offsets.topic.replication.factor={rf}",
                    f"transaction.state.log.replication.factor={rf}",
                    f"transaction.state.log.min.isr={min(rf, 2)}",
                    f"share.coordinator.state.topic.replication.factor={rf}",
                    f"share.coordinator.state.topic.min.isr={min(rf, 2)}",
                    "group.initial.rebalance.delay.ms=0",
                    "",
                ]
            )
        )
    (kafka_conf / "log4j2.properties").write_text(
        "status = warn\n"
        "appender.stdout.type = Console\n"
        "appender.stdout.name = STDOUT\n"
        "appender.stdout.layout.type = PatternLayout\n"
        "appender.stdout.layout.pattern = [%d] %p %m (%c)%n\n"
        "rootLogger.level = INFO\n"
        "rootLogger.appenderRef.stdout.ref = STDOUT\n"
        # Client tools (console producer, topics) should print results, not INFO chatter.
        "logger.clients.name = org.apache.kafka.clients\n"
        "logger.clients.level = WARN\n"
    )

    # Command-line tools print their results, not INFO chatter.
    (kafka_conf / "tools-log4j2.properties").write_text(
        "status = error\n"
        "appender.stderr.type = Console\n"
        "appender.stderr.name = STDERR\n"
        "appender.stderr.target = SYSTEM_ERR\n"
        "appender.stderr.layout.type = PatternLayout\n"
        "appender.stderr.layout.pattern = [%d] %p %m (%c)%n\n"
        "rootLogger.level = WARN\n"
        "rootLogger.appenderRef.stderr.ref = STDERR\n"
    )

    (hadoop_conf / "core-site.xml").write_text(
        _xml(
            {
                "fs.defaultFS": cfg.hdfs_uri,
                "hadoop.tmp.dir": data / "hadoop-tmp",
                "hadoop.http.staticuser.user": "streamlab",
            }
        )
    )
    for dn in cfg.datanodes:
        dn_conf = cfg.conf_dir / dn.conf
        dn_conf.mkdir(parents=True, exist_ok=True)
        (dn_conf / "hdfs-site.xml").write_text(
            _xml(
                {
                    "dfs.namenode.name.dir": f"file://{data / 'hdfs' / 'name'}",
                    "dfs.datanode.data.dir": f"file://{datanode_data_dir(cfg, dn)}",
                    "dfs.replication": min(cfg.replication, len(cfg.datanodes)),
                    "dfs.permissions.enabled": "false",
                    "dfs.namenode.rpc-address": f"{HOST}:{p['namenode_rpc']}",
                    "dfs.namenode.http-address": f"{HOST}:{p['namenode_http']}",
                    "dfs.namenode.secondary.http-address": f"{HOST}:0",
                    "dfs.datanode.address": f"{HOST}:{p[dn.port]}",
                    "dfs.datanode.http.address": f"{HOST}:{p[dn.http_port]}",
                    "dfs.datanode.ipc.address": f"{HOST}:{p[dn.ipc_port]}",
                    # WebHDFS redirects reads/writes to the DataNode by this name.
                    "dfs.datanode.hostname": HOST,
                    "dfs.namenode.safemode.extension": 0,
                    "dfs.namenode.safemode.min.datanodes": 0,
                    "dfs.webhdfs.enabled": "true",
                    "dfs.heartbeat.interval": 1,
                    # A stopped DataNode is declared dead after ~30 s instead of 10.5 min, so
                    # writers stop choosing it (cluster profile fault tests).
                    "dfs.namenode.heartbeat.recheck-interval": 10000,
                    # Until then, a DataNode silent for 3 s is "stale": the NameNode lists it
                    # last, so readers (WebHDFS OPEN redirects included) and writers skip it.
                    "dfs.namenode.avoid.read.stale.datanode": "true",
                    "dfs.namenode.avoid.write.stale.datanode": "true",
                    "dfs.namenode.stale.datanode.interval": 3000,
                    "dfs.client.block.write.replace-datanode-on-failure.enable": "false",
                }
            )
        )
    (hadoop_conf / "log4j.properties").write_text(
        "log4j.rootLogger=INFO,console\n"
        "log4j.appender.console=org.apache.log4j.ConsoleAppender\n"
        "log4j.appender.console.target=System.err\n"
        "log4j.appender.console.layout=org.apache.log4j.PatternLayout\n"
        "log4j.appender.console.layout.ConversionPattern=%d{ISO8601} %p %c{2}: %m%n\n"
        "log4j.logger.org.apache.hadoop.util.NativeCodeLoader=ERROR\n"
    )

    # The Maven hadoop-hdfs jar ships no `webapps/` (the tarball does); the HTTP servers only
    # need the folders to exist: WebHDFS, /jmx and /conf are servlets registered in code.
    for app in ("hdfs", "datanode", "secondary", "static"):
        web_inf = hadoop_conf / "webapps" / app / "WEB-INF"
        web_inf.mkdir(parents=True, exist_ok=True)
        (web_inf / "web.xml").write_text(
            '<?xml version="1.0"?>\n<web-app xmlns="http://xmlns.jcp.org/xml/ns/javaee" version="3.1"/>\n'
        )
    (hadoop_conf / "webapps" / "hdfs" / "index.html").write_text(
        "<html><body><h1>streamlab HDFS NameNode</h1><p>The HTML UI is not bundled in the "
        'Maven artifacts. Use <a href="/jmx">/jmx</a> and <a href="/webhdfs/v1/?op=LISTSTATUS">'
        "WebHDFS</a>, or <code>bin/hdfs dfs</code>.</p></body></html>\n"
    )

    # The connector, and the project's own jar (the landing's Parquet writer, jvm/src).
    jars = sorted(str(j) for group in ("spark-kafka", "streamlab") for j in cfg.jars(group).glob("*.jar"))
    (spark_conf / "spark-defaults.conf").write_text(
        "# Generated by streamlab.stack. Connector jars are local files: no download at run time.\n"
        f"spark.jars {','.join(jars)}\n"
        f"spark.hadoop.fs.defaultFS {cfg.hdfs_uri}\n"
        f"spark.driver.host {HOST}\n"
        f"spark.driver.bindAddress {HOST}\n"
        "spark.ui.showConsoleProgress false\n"
        # The HDFS client sleeps 400 ms by default before re-polling the close of every small
        # file (checkpoints, commit logs): 20 ms takes streaming p50 from 1.45 s to 0.35 s.
        "spark.hadoop.dfs.client.block.write.locateFollowingBlock.initial.delay.ms 20\n"
        # On the standalone cluster an application takes every free core unless capped: the
        # streaming job would starve the landing and batch jobs.
        # The cluster profile's wrappers submit to its master (SparkSubmitOperator passes
        # --master from spark_default, which wins).
        + (
            f"spark.master {cfg.spark_master_url}\nspark.cores.max 2\nspark.executor.memory 1g\n"
            if cfg.cluster
            else ""
        )
    )
    (spark_conf / "log4j2.properties").write_text(
        "rootLogger.level = warn\n"
        "rootLogger.appenderRef.stdout.ref = console\n"
        "appender.console.type = Console\n"
        "appender.console.name = console\n"
        "appender.console.target = SYSTEM_ERR\n"
        "appender.console.layout.type = PatternLayout\n"
        "appender.console.layout.pattern = %d{yy/MM/dd HH:mm:ss} %p %c{1}: %m%n\n"
    )
    # Extra DataNodes get their own folder: same core-site, log4j and webapps, own ports.
    for dn in cfg.datanodes:
        if dn.conf != "hadoop":
            for name in ("core-site.xml", "log4j.properties"):
                shutil.copy(hadoop_conf / name, cfg.conf_dir / dn.conf / name)
            shutil.copytree(hadoop_conf / "webapps", cfg.conf_dir / dn.conf / "webapps", dirs_exist_ok=True)


def server_properties(cfg: StackConfig, node: KafkaNode) -> Path:
    name = f"server-{node.node_id}.properties" if cfg.cluster else "server.properties"
    return cfg.conf_dir / "kafka" / name


def kafka_data_dir(cfg: StackConfig, node: KafkaNode) -> Path:
    return cfg.home / "data" / (f"kafka-{node.node_id}" if cfg.cluster else "kafka")


def datanode_data_dir(cfg: StackConfig, dn: DataNode) -> Path:
    return cfg.home / "data" / "hdfs" / (dn.service if cfg.cluster else "data")


# ---------------------------------------------------------------------------------------------
# Processes
# ---------------------------------------------------------------------------------------------
def _pid_file(cfg: StackConfig, name: str) -> Path:
    return cfg.run_dir / f"{name}.pid"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie is not alive for our purposes.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (OSError, IndexError):
        return True


def _environ_has_marker(pid: int, marker: str) -> bool:
    try:
        data = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return False
    return f"STREAMLAB_STACK_ID={marker}".encode() in data.split(b"\0")


def _start_time(pid: int) -> str | None:
    """Kernel start time of a process (field 22 of /proc/<pid>/stat): tells pid reuse apart."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def running_pid(cfg: StackConfig, name: str) -> int | None:
    """Pid of a service of THIS stack, or None (stale pid files are ignored).

    The pid file holds "<pid> <start time>"; the environment marker cannot be used here
    because Airflow's setproctitle overwrites /proc/<pid>/environ.
    """
    try:
        pid_text, started = _pid_file(cfg, name).read_text().split()
        pid = int(pid_text)
    except (OSError, ValueError):
        return None
    if _alive(pid) and _start_time(pid) == started:
        return pid
    return None


def descendants(pids: list[int]) -> list[int]:
    """All live descendants of `pids` (children may have left the process group)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int(Path(entry, "stat").read_text().rsplit(") ", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], list(pids)
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def stack_pids(marker: str) -> list[int]:
    """Every process carrying this stack's marker, including those outside our groups."""
    me = os.getpid()
    ancestors = set()
    pid = me
    while pid > 1:
        ancestors.add(pid)
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().split(") ")[1].split()[1])
        except (OSError, IndexError, ValueError):
            break
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            pid = int(entry.name)
            if pid not in ancestors and _environ_has_marker(pid, marker) and _alive(pid):
                found.append(pid)
    return found


def port_owner(port: int) -> str | None:
    """'pid 123 (java ...)' listening on a TCP port, when /proc tells."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            if cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(cols[9])
    if not inodes:
        return None
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            for fd in (entry / "fd").iterdir():
                link = os.readlink(fd)
                if link.startswith("socket:[") and link[8:-1] in inodes:
                    cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                    return f"pid {entry.name} ({cmd[:120].strip()})"
        except OSError:
            continue
    return "another process (not visible to this user)"


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


def tail(path: Path, lines: int = 30) -> str:
    try:
        content = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log yet)"
    return "\n".join(content[-lines:])


# ---------------------------------------------------------------------------------------------
# Health checks: each returns (healthy, detail)
# ---------------------------------------------------------------------------------------------
def _http_json(url: str, timeout: float = 3.0):
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return json.loads(resp.read().decode())


def kafka_health(node_id: int) -> Callable[[StackConfig], tuple[bool, str]]:
    def check(cfg: StackConfig) -> tuple[bool, str]:
        from confluent_kafka.admin import AdminClient

        node = next(n for n in cfg.kafka_nodes if n.node_id == node_id)
        admin = AdminClient(
            {"bootstrap.servers": f"{HOST}:{cfg.ports[node.port]}", "log_level": 0, "logger": _null_logger()}
        )
        try:
            md = admin.list_topics(timeout=3)
        except Exception as exc:  # KafkaException: broker not reachable yet
            return False, str(exc)
        if node_id not in md.brokers:
            return False, f"broker {node_id} not yet in the cluster metadata"
        return True, f"{len(md.brokers)} broker(s) in the cluster, {len(md.topics)} topic(s)"

    return check


def _null_logger():
    import logging

    log = logging.getLogger("streamlab.kafka-health")
    log.addHandler(logging.NullHandler())
    log.propagate = False
    return log


def namenode_health(cfg: StackConfig) -> tuple[bool, str]:
    try:
        info = _http_json(f"{cfg.webhdfs_url}/jmx?qry=Hadoop:service=NameNode,name=NameNodeInfo")["beans"][0]
    except (OSError, ValueError, KeyError, IndexError) as exc:
        return False, f"web UI not answering ({exc})"
    if info.get("Safemode"):
        return False, "in safe mode"
    return True, f"up, version {info.get('Version', '?').split(',')[0]}"


def datanode_health(dn: DataNode) -> Callable[[StackConfig], tuple[bool, str]]:
    def check(cfg: StackConfig) -> tuple[bool, str]:
        try:
            info = _http_json(f"{cfg.webhdfs_url}/jmx?qry=Hadoop:service=NameNode,name=NameNodeInfo")
            live = json.loads(info["beans"][0]["LiveNodes"])
        except (OSError, ValueError, KeyError, IndexError) as exc:
            return False, f"NameNode not answering ({exc})"
        addr = f"{HOST}:{cfg.ports[dn.port]}"
        if not any(node.get("xferaddr") == addr for node in live.values()):
            return False, f"not registered with the NameNode ({len(live)} live DataNode(s))"
        return True, f"live ({len(live)} live DataNode(s) in all)"

    return check


def spark_master_health(cfg: StackConfig) -> tuple[bool, str]:
    try:
        state = _http_json(f"http://{HOST}:{cfg.ports['spark_master_ui']}/json/")
    except (OSError, ValueError) as exc:
        return False, f"web UI not answering ({exc})"
    return state.get("status") == "ALIVE", f"{state.get('status')}, {cfg.spark_master_url}"


def spark_worker_health(cfg: StackConfig) -> tuple[bool, str]:
    try:
        state = _http_json(f"http://{HOST}:{cfg.ports['spark_master_ui']}/json/")
    except (OSError, ValueError) as exc:
        return False, f"master not answering ({exc})"
    alive = int(state.get("aliveworkers", 0))
    return alive >= 1, f"{alive} alive worker(s), {state.get('cores', '?')} cores"


# url -> (when fetched, answer or None, why not). One answer serves the four Airflow checks of
# a `status` or of one round of `wait_healthy`, instead of four requests to a busy server.
_airflow_health_seen: dict[str, tuple[float, dict | None, str]] = {}


def _airflow_health(cfg: StackConfig) -> tuple[dict | None, str]:
    url = f"{cfg.airflow_url}/api/v2/monitor/health"
    seen = _airflow_health_seen.get(url)
    if seen and time.monotonic() - seen[0] < 2:
        return seen[1], seen[2]
    try:
        # The one api-server worker can take seconds to answer while it serves task starts on 2
        # busy cores (a CI run saw 3.4 s); 3 s made a healthy server look down.
        health, why = _http_json(url, timeout=15), ""
    except TimeoutError:
        health, why = None, "api-server did not answer within 15 s"
    except (OSError, ValueError) as exc:
        health, why = None, f"api-server not answering ({exc})"
    _airflow_health_seen[url] = (time.monotonic(), health, why)
    return health, why


def airflow_component_health(component: str) -> Callable[[StackConfig], tuple[bool, str]]:
    def check(cfg: StackConfig) -> tuple[bool, str]:
        health, why = _airflow_health(cfg)
        if health is None:
            return False, why
        if component == "api-server":
            return True, f"{cfg.airflow_url}"
        status = (health.get(component) or {}).get("status")
        return status == "healthy", f"{status or 'unknown'}"

    return check


def postgres_health(cfg: StackConfig) -> tuple[bool, str]:
    return postgres.health(cfg, cfg.secrets().get("postgres_password", ""))


# ---------------------------------------------------------------------------------------------
# Services
# ---------------------------------------------------------------------------------------------
@dataclass
class Service:
    name: str
    ports: tuple[str, ...]  # keys of StackConfig.ports this service listens on
    command: Callable[[StackConfig, str], list[str]]
    health: Callable[[StackConfig], tuple[bool, str]]
    stop_tier: int  # `down` stops tier 0 first; a tier stops all at once
    stop_timeout: float = 20.0
    uses_metadata_db: bool = False  # started once PostgreSQL answers and Airflow's schema is migrated
    stop_signal: int = signal.SIGTERM
    signal_group: bool = True  # the stop signal goes to its whole process group
    run_as: Callable[[], object] | None = None  # pwd entry of another account, or None
    before_start: Callable[[StackConfig], None] | None = None


# Stop order: Airflow first (it may be running Spark jobs), then Spark, HDFS, Kafka, and
# PostgreSQL last (Airflow writes to it until it stops).
TIER_AIRFLOW, TIER_SPARK, TIER_DATANODE, TIER_NAMENODE, TIER_KAFKA, TIER_POSTGRES = range(6)


def _airflow(*args: str) -> Callable[[StackConfig, str], list[str]]:
    return lambda cfg, java: [str(cfg.venv_bin / "airflow"), *args]


def services(cfg: StackConfig) -> list[Service]:
    """The processes of this stack's profile, in start order."""
    heap = "384m" if cfg.cluster else "512m"
    result = [
        Service(
            "postgres",
            ("postgres",),
            lambda cfg, java: postgres.command(cfg),
            postgres_health,
            TIER_POSTGRES,
            stop_timeout=30,
            # SIGINT to the postmaster alone is PostgreSQL's "fast" shutdown; its children stop
            # on their own, in order. SIGTERM to the group would stop them out of order.
            stop_signal=signal.SIGINT,
            signal_group=False,
            run_as=postgres.server_user,
            before_start=postgres.wait_for_old_server,
        )
    ]
    result += [
        Service(
            node.service,
            (node.port, node.controller_port),
            lambda cfg, java, node=node: kafka_java_cmd(
                cfg, java, "kafka.Kafka", str(server_properties(cfg, node)), heap=heap
            ),
            kafka_health(node.node_id),
            TIER_KAFKA,
            stop_timeout=30,
        )
        for node in cfg.kafka_nodes
    ]
    result.append(
        Service(
            "namenode",
            ("namenode_rpc", "namenode_http"),
            lambda cfg, java: hadoop_java_cmd(
                cfg, java, "org.apache.hadoop.hdfs.server.namenode.NameNode", heap="384m"
            ),
            namenode_health,
            TIER_NAMENODE,
        )
    )
    result += [
        Service(
            dn.service,
            (dn.port, dn.http_port, dn.ipc_port),
            lambda cfg, java, dn=dn: hadoop_java_cmd(
                cfg, java, "org.apache.hadoop.hdfs.server.datanode.DataNode", heap="256m", conf_name=dn.conf
            ),
            datanode_health(dn),
            TIER_DATANODE,
        )
        for dn in cfg.datanodes
    ]
    if cfg.cluster:
        spark_class = lambda cfg: str(cfg.venv_bin / "spark-class")  # noqa: E731
        result += [
            Service(
                "spark-master",
                ("spark_master", "spark_master_ui"),
                lambda cfg, java: [
                    spark_class(cfg),
                    "org.apache.spark.deploy.master.Master",
                    "--host",
                    HOST,
                    "--port",
                    str(cfg.ports["spark_master"]),
                    "--webui-port",
                    str(cfg.ports["spark_master_ui"]),
                ],  # fmt: skip
                spark_master_health,
                TIER_SPARK,
            ),
            Service(
                "spark-worker",
                ("spark_worker_ui",),
                lambda cfg, java: [
                    spark_class(cfg),
                    "org.apache.spark.deploy.worker.Worker",
                    "--host",
                    HOST,
                    "--webui-port",
                    str(cfg.ports["spark_worker_ui"]),
                    "--cores",
                    "4",
                    "--memory",
                    "3g",
                    "--work-dir",
                    str(cfg.home / "data" / "spark-work"),
                    cfg.spark_master_url,
                ],  # fmt: skip
                spark_worker_health,
                TIER_SPARK,
            ),
        ]
    result += [
        # One api-server serves the UI, the REST API and the execution API that task runners call.
        Service(
            "airflow-api-server",
            ("airflow_api",),
            _airflow("api-server", "--host", HOST, "--port", str(cfg.ports["airflow_api"]), "--workers", "1"),
            airflow_component_health("api-server"),
            TIER_AIRFLOW,
            uses_metadata_db=True,
        ),
        # The log servers bind every interface; LocalExecutor logs are local files the
        # api-server reads directly, so they are not needed.
        Service(
            "airflow-scheduler",
            (),
            _airflow("scheduler", "--skip-serve-logs"),
            airflow_component_health("scheduler"),
            TIER_AIRFLOW,
            uses_metadata_db=True,
        ),  # fmt: skip
        Service(
            "airflow-dag-processor",
            (),
            _airflow("dag-processor"),
            airflow_component_health("dag_processor"),
            TIER_AIRFLOW,
            uses_metadata_db=True,
        ),  # fmt: skip
        Service(
            "airflow-triggerer",
            (),
            _airflow("triggerer", "--skip-serve-logs"),
            airflow_component_health("triggerer"),
            TIER_AIRFLOW,
            uses_metadata_db=True,
        ),  # fmt: skip
    ]
    return result


def _as_user(user) -> dict:
    """Popen arguments that run a child as `user` (a pwd entry), without root's groups."""
    if user is None:
        return {}
    return {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}


def start_process(cfg: StackConfig, name: str, cmd: list[str], user=None) -> int:
    log = cfg.log_dir / f"{name}.log"
    with open(log, "ab") as out:
        out.write(f"\n==== {time.strftime('%Y-%m-%d %H:%M:%S')} starting: {' '.join(cmd)}\n".encode())
        out.flush()
        proc = subprocess.Popen(
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=cfg.home,
            env=cfg.env(),
            start_new_session=True,  # own process group: one signal reaches all its children
            **_as_user(user),
        )
    _pid_file(cfg, name).write_text(f"{proc.pid} {_start_time(proc.pid)}")
    return proc.pid


def _run_step(cfg: StackConfig, name: str, cmd: list[str], timeout: float = 120, user=None) -> None:
    """A one-shot setup command (format, migrate) with its output kept in a log."""
    log = cfg.log_dir / f"{name}.log"
    with open(log, "ab") as out:
        out.write(f"\n==== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(cmd)}\n".encode())
        out.flush()
        try:
            rc = subprocess.run(
                cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                cwd=cfg.home, env=cfg.env(), timeout=timeout, **_as_user(user),
            ).returncode  # fmt: skip
        except subprocess.TimeoutExpired:
            rc = "timeout"
    if rc != 0:
        raise StackError(f"`{name}` failed ({rc}). Last lines of {log}:\n{tail(log)}")


# ---------------------------------------------------------------------------------------------
# One-time storage formatting (stamp files make an interrupted `up` redo the step)
# ---------------------------------------------------------------------------------------------
def format_storage(cfg: StackConfig, java: str) -> None:
    data = cfg.home / "data"
    postgres.initdb(
        cfg, cfg.secrets(create=True)["postgres_password"],
        lambda name, cmd, user: _run_step(cfg, name, cmd, user=user), say,
    )  # fmt: skip
    for node in cfg.kafka_nodes:
        kafka_dir = kafka_data_dir(cfg, node)
        if not (kafka_dir / "meta.properties").exists():
            say(f"formatting Kafka storage of {node.service} (KRaft, once)")
            shutil.rmtree(kafka_dir, ignore_errors=True)
            _run_step(
                cfg,
                f"{node.service}-format",
                kafka_java_cmd(
                    # `--cluster-id=<id>`: an id kept from an older version may start with "-".
                    cfg,
                    java,
                    "kafka.tools.StorageTool",
                    "format",
                    f"--cluster-id={_cluster_id(cfg)}",
                    "-c",
                    str(server_properties(cfg, node)),
                ),  # fmt: skip
                timeout=120,
            )
    name_dir = data / "hdfs" / "name"
    if not namenode_formatted(name_dir):
        say("formatting HDFS NameNode (once)")
        shutil.rmtree(name_dir, ignore_errors=True)
        # A DataNode formatted for another namespace would refuse to join.
        for dn in cfg.datanodes:
            shutil.rmtree(datanode_data_dir(cfg, dn), ignore_errors=True)
        _run_step(
            cfg,
            "namenode-format",
            hadoop_java_cmd(
                cfg,
                java,
                "org.apache.hadoop.hdfs.server.namenode.NameNode",
                "-format",
                "-force",
                "-nonInteractive",
            ),  # fmt: skip
            timeout=120,
        )


def namenode_formatted(name_dir: Path) -> bool:
    """True once `namenode -format` completed: it writes VERSION first and the image last, so a
    format interrupted in between (Ctrl-C on a first `up`) left a VERSION the NameNode cannot start
    from ("No valid image files found")."""
    current = name_dir / "current"
    return (current / "VERSION").exists() and any(
        re.fullmatch(r"fsimage_\d+", p.name) for p in current.glob("fsimage_*")
    )


def _cluster_id(cfg: StackConfig) -> str:
    """One Kafka cluster id per stack, kept so that every node is formatted with it."""
    path = cfg.home / "data" / "kafka-cluster-id"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(new_cluster_id())
    return path.read_text().strip()


def new_cluster_id() -> str:
    """16 random bytes in URL-safe base64 without padding, as `kafka-storage.sh random-uuid`; like
    Kafka's Uuid.randomUuid(), never one that starts with "-" (a command line would take it for an
    option: `kafka-storage format -t -RHh...` fails with "expected one argument")."""
    import base64

    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def migrate_airflow_db(cfg: StackConfig) -> None:
    """Create Airflow's database in PostgreSQL if needed, and bring its schema to this Airflow."""
    import airflow

    stamp = cfg.airflow_home / ".migrated"
    created = postgres.ensure_database(cfg, cfg.secrets(create=True)["postgres_password"])  # PostgresError
    if created or not (stamp.exists() and stamp.read_text() == airflow.__version__):
        say(f"migrating the Airflow {airflow.__version__} metadata database")
        stamp.unlink(missing_ok=True)  # an interrupted migration is redone next time
        _run_step(cfg, "airflow-db-migrate", [str(cfg.venv_bin / "airflow"), "db", "migrate"], timeout=300)
        stamp.write_text(airflow.__version__)


# ---------------------------------------------------------------------------------------------
# Commands
# ---------------------------------------------------------------------------------------------
def say(msg: str) -> None:
    print(f"[streamlab] {msg}", flush=True)


def check_ports(cfg: StackConfig, services: list[Service]) -> None:
    taken = []
    for svc in services:
        for key in svc.ports:
            port = cfg.ports[key]
            if not port_free(port):
                owner = port_owner(port) or "an unknown process"
                taken.append(
                    f"  port {port} ({PORT_DEFAULTS[key][1]}, needed by {svc.name}) is in use by "
                    f"{owner}.\n    Stop it, or choose another port: STREAMLAB_PORT_{key.upper()}=<port>"
                )
    if taken:
        raise StackError("Cannot start: ports already taken:\n" + "\n".join(taken))


def check_jars(cfg: StackConfig) -> None:
    for group in ("kafka", "hadoop", "spark-kafka", "streamlab"):
        if not list(cfg.jars(group).glob("*.jar")):
            raise StackError(
                f"No jars in {cfg.jars(group)}: run `make deps` (or `make up`, which installs them)."
            )


def health_all(cfg: StackConfig) -> dict[str, tuple[bool, str]]:
    return {svc.name: svc.health(cfg) for svc in services(cfg)}


def up(cfg: StackConfig, timeout: float) -> None:
    started_at = time.monotonic()
    if all(running_pid(cfg, s.name) for s in services(cfg)) and all(ok for ok, _ in health_all(cfg).values()):
        say(f"already up (checked in {time.monotonic() - started_at:.1f} s)")
        # Client configs (spark-defaults: the jars) follow an updated checkout without a restart.
        check_jars(cfg)
        write_configs(cfg)
        if os.environ.get("STREAMLAB_START_DAGS", "1") != "0":
            start_platform_dags(cfg, provision=False)
        print_summary(cfg)
        return

    java = java_binary()
    check_jars(cfg)
    try:
        postgres.check_data_dir(cfg)
        cfg.save()
        cfg.secrets(create=True)
        write_configs(cfg)
        to_start = [s for s in services(cfg) if not running_pid(cfg, s.name)]
        if any(s.name == "postgres" for s in to_start):
            # Airflow's processes lost their database (some exit on it, later): start them afresh.
            orphaned = [s for s in services(cfg) if s.uses_metadata_db and running_pid(cfg, s.name)]
            if orphaned:
                say("PostgreSQL was not running: restarting the Airflow processes that used it")
                stop_services(cfg, orphaned)
                to_start = [s for s in services(cfg) if not running_pid(cfg, s.name)]
        check_ports(cfg, to_start)
        format_storage(cfg, java)
    except postgres.PostgresError as exc:
        raise StackError(str(exc)) from None

    def start(group: list[Service]) -> None:
        for svc in group:
            if svc.before_start:
                svc.before_start(cfg)
            user = svc.run_as() if svc.run_as else None
            pid = start_process(cfg, svc.name, svc.command(cfg, java), user=user)
            say(f"started {svc.name} (pid {pid}, log {cfg.log_dir / (svc.name + '.log')})")

    try:
        start([s for s in to_start if not s.uses_metadata_db])
        airflow_services = [s for s in to_start if s.uses_metadata_db]
        if airflow_services:
            wait_healthy(cfg, deadline=started_at + timeout, names=["postgres"])
            migrate_airflow_db(cfg)
            start(airflow_services)
    except postgres.PostgresError as exc:
        raise StackError(str(exc)) from None
    wait_healthy(cfg, deadline=started_at + timeout)
    say(f"all services healthy in {time.monotonic() - started_at:.1f} s")
    if os.environ.get("STREAMLAB_START_DAGS", "1") != "0":
        start_platform_dags(cfg)
    print_summary(cfg)


PROVISION_DAG = "kafka_topics_provision"
STREAMING_DAG = "streaming_wordcount"


def start_platform_dags(cfg: StackConfig, timeout: float = 180, provision: bool = True) -> None:
    """Make the platform do its job without clicks: topics provisioned, streaming running.

    Provisioning runs on every start (it is idempotent, and the topics file may have changed),
    and on a no-op `up` only if it never succeeded; the streaming DAG is
    continuous and unpaused at creation, so the scheduler starts and supervises it. A DAG the
    user paused stays paused.
    """
    if not (REPO / "dags" / f"{PROVISION_DAG}.py").exists():
        return
    try:
        _start_platform_dags(cfg, timeout, provision)
    except (OSError, ValueError, KeyError) as exc:  # HTTP errors are OSErrors
        raise rest_api_error(cfg, exc) from None


def rest_api_error(cfg: StackConfig, exc: Exception) -> StackError:
    if isinstance(exc, TimeoutError):
        return StackError(
            f"Airflow's REST API at {cfg.airflow_url} did not answer in time ({exc}). If `make status` "
            f"shows it healthy, it is busy: see {cfg.log_dir / 'airflow-api-server.log'}, then run the "
            "command again."
        )
    return StackError(
        f"could not talk to Airflow's REST API at {cfg.airflow_url}: {exc}; is the stack up (`make status`)?"
    )


def _start_platform_dags(cfg: StackConfig, timeout: float, provision: bool) -> None:
    from streamlab.airflow_client import AirflowClient

    client = AirflowClient(cfg)
    deadline = time.monotonic() + timeout
    while client.dag(PROVISION_DAG) is None:
        if time.monotonic() > deadline:
            raise StackError(
                f"DAG {PROVISION_DAG} was not parsed within {timeout:.0f} s; see "
                f"{cfg.log_dir / 'airflow-dag-processor.log'} and `bin/airflow dags list-import-errors`."
            )
        time.sleep(2)
    if provision or not client.runs(PROVISION_DAG, state="success", limit=1):
        say(f"provisioning Kafka topics from dags/topics.yaml (DAG {PROVISION_DAG})")
        run_id = client.trigger(PROVISION_DAG)["dag_run_id"]
        while True:
            state = client.run_state(PROVISION_DAG, run_id)
            if state in ("success", "failed"):
                break
            if time.monotonic() > deadline:
                raise StackError(f"{PROVISION_DAG} run {run_id} still {state} after {timeout:.0f} s")
            time.sleep(2)
        if state != "success":
            raise StackError(
                f"{PROVISION_DAG} run {run_id} failed: see its log in the Airflow UI or under "
                f"{cfg.airflow_home / 'logs'}; fix dags/topics.yaml or the drift it reports, then "
                "`make up` again."
            )
        say("topics provisioned")
    streaming = client.dag(STREAMING_DAG)
    if streaming is not None:
        say(
            f"{STREAMING_DAG}: {'paused (`make stream-start` runs it)' if streaming['is_paused'] else 'running under the scheduler'}"
        )


def stream(cfg: StackConfig, action: str) -> None:
    """`stream-stop`: pause the streaming DAG and end its runs (the Spark job goes with its task);
    `stream-start`: unpause it, so the continuous schedule starts a run from the checkpoint."""
    from streamlab.airflow_client import AirflowClient

    try:
        client = AirflowClient(cfg)
        if action == "stop":
            say(f"pausing {STREAMING_DAG} and failing its running and queued runs")
            ended = client.stop_dag(STREAMING_DAG)
            say(f"stopped: {', '.join(ended) or 'no run was active'}; the job's processes end within seconds")
        else:
            client.set_paused(STREAMING_DAG, False)
            say(f"{STREAMING_DAG} unpaused: a run starts within seconds, resuming from its checkpoint")
    except RuntimeError as exc:  # runs kept starting
        raise StackError(str(exc)) from None
    except (OSError, ValueError, KeyError) as exc:  # HTTP errors are OSErrors
        raise rest_api_error(cfg, exc) from None


def wait_healthy(cfg: StackConfig, deadline: float, names: list[str] | None = None) -> None:
    by_name = {s.name: s for s in services(cfg)}
    pending = set(names or by_name)
    last: dict[str, str] = {}
    while pending:
        for name in sorted(pending):
            svc = by_name[name]
            if not running_pid(cfg, name):
                log = cfg.log_dir / f"{name}.log"
                raise StackError(f"{name} exited during start-up. Last lines of {log}:\n{tail(log)}")
            ok, detail = svc.health(cfg)
            last[name] = detail
            if ok:
                pending.discard(name)
                say(f"{name} healthy: {detail}")
        if not pending:
            return
        if time.monotonic() > deadline:
            msgs = []
            for name in sorted(pending):
                log = cfg.log_dir / f"{name}.log"
                msgs.append(
                    f"{name} did not become healthy in time (last check: {last.get(name)}).\n"
                    f"Last lines of {log}:\n{tail(log)}"
                )
            raise StackError(
                "\n\n".join(msgs) + "\n\nThe other services keep running; `make down` stops them."
            )
        time.sleep(1)


def print_summary(cfg: StackConfig) -> None:
    user = "admin"
    creds = f"user `{user}`, password in {cfg.admin_password_file}"
    try:
        user, password = cfg.admin_credentials()
        creds = f"user `{user}`, password `{password}` (kept in {cfg.admin_password_file})"
    except (OSError, ValueError, StopIteration):
        pass
    spark = (
        f"\n  Spark master           {cfg.spark_master_url}   UI http://{HOST}:{cfg.ports['spark_master_ui']}"
        if cfg.cluster
        else ""
    )
    print(
        f"""
  Airflow UI / REST API  {cfg.airflow_url}      ({creds})
  Kafka bootstrap        {cfg.kafka_bootstrap}
  HDFS                   {cfg.hdfs_uri}   WebHDFS / NameNode UI {cfg.webhdfs_url}{spark}
  State and logs         {cfg.home}
  Clients                bin/kafka-topics.sh, bin/kafka-console-producer.sh,
                         bin/kafka-console-consumer.sh, bin/hdfs dfs, bin/spark-submit, bin/airflow
""",
        flush=True,
    )


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def down(cfg: StackConfig) -> None:
    marker = str(cfg.home)
    svcs = services(cfg)
    stop_services(cfg, svcs)
    for svc in svcs:
        _pid_file(cfg, svc.name).unlink(missing_ok=True)
    # Services of an earlier version of the stack (e.g. its second Airflow api-server).
    for pid_file in sorted(cfg.run_dir.glob("*.pid")):
        pid = running_pid(cfg, pid_file.stem)
        if pid:
            say(f"stopping {pid_file.stem} (pid {pid}), a service of an earlier version of the stack")
            _signal_group(pid, signal.SIGTERM)
            _wait_gone([pid], 20)
            _signal_group(pid, signal.SIGKILL)
        pid_file.unlink(missing_ok=True)
    # Whatever was re-parented away from the services (e.g. a Spark driver whose task died).
    leftovers = stack_pids(marker)
    if leftovers:
        say(f"stopping {len(leftovers)} leftover process(es) of this stack: {leftovers}")
        for pid in leftovers:
            _signal_group(pid, signal.SIGTERM)
        _wait_gone(leftovers, 10)
        for pid in stack_pids(marker):
            _signal_group(pid, signal.SIGKILL)
        _wait_gone(leftovers, 5)
    say("stack stopped")


def stop_services(cfg: StackConfig, svcs: list[Service]) -> None:
    """Stop these services, tier by tier, each with its whole process tree."""
    # Within a tier all processes stop together: KRaft brokers stopped one by one lose their
    # quorum and hang in controlled shutdown.
    for tier in sorted({s.stop_tier for s in svcs}):
        group = [(s, running_pid(cfg, s.name)) for s in svcs if s.stop_tier == tier]
        group = [(s, pid) for s, pid in group if pid]
        trees = {}
        for svc, pid in group:
            trees[pid] = [pid, *descendants([pid])]
            say(f"stopping {svc.name} (pid {pid})")
            if svc.signal_group:
                _signal_group(pid, svc.stop_signal)
            else:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, svc.stop_signal)
        if group:
            _wait_gone([pid for _, pid in group], max(s.stop_timeout for s, _ in group))
        for svc, pid in group:
            # Children that left the group (or ignored the signal) go too.
            survivors = [p for p in trees[pid] + descendants(trees[pid]) if _alive(p)]
            if survivors and not _alive(pid):
                _wait_gone(survivors, 5)  # the main process is gone: its children follow it
                survivors = [p for p in survivors if _alive(p)]
            if survivors:
                if _alive(pid):
                    say(f"{svc.name} did not stop in {svc.stop_timeout:.0f} s: killing it")
                _signal_group(pid, signal.SIGKILL)
                for p in survivors:
                    _signal_group(p, signal.SIGKILL)
                _wait_gone(survivors, 5)


def _wait_gone(pids: list[int], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.2)


def status(cfg: StackConfig) -> bool:
    all_ok = True
    print(f"stack in {cfg.home}")
    for svc in services(cfg):
        pid = running_pid(cfg, svc.name)
        if pid:
            ok, detail = svc.health(cfg)
        else:
            ok, detail = False, "not running"
        all_ok &= ok
        ports = ", ".join(str(cfg.ports[k]) for k in svc.ports) or "-"
        print(
            f"  {svc.name:22} {'healthy' if ok else 'DOWN':8} pid {pid or '-':<8} ports {ports:18} {detail}"
        )
    return all_ok


def clean(cfg: StackConfig) -> None:
    down(cfg)
    if cfg.home.exists():
        shutil.rmtree(cfg.home)
        say(f"removed {cfg.home}")


def shell_env(cfg: StackConfig) -> str:
    keep = cfg.env(base={})
    # The lab calls `kafka-topics.sh` without a folder (it put Kafka's bin/ on PATH).
    keep["PATH"] = f"{REPO / 'bin'}:{cfg.venv_bin}:{os.environ.get('PATH', '')}"
    return "\n".join(f"export {k}={_shquote(v)}" for k, v in sorted(keep.items()))


def _shquote(v: str) -> str:
    return "'" + v.replace("'", "'\"'\"'") + "'"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m streamlab.stack", description=__doc__.split("\n")[0])
    parser.add_argument(
        "command", choices=["up", "down", "status", "clean", "env", "stream-stop", "stream-start"]
    )
    parser.add_argument("--timeout", type=float, default=float(os.environ.get("STREAMLAB_UP_TIMEOUT", 240)),
                        help="seconds to wait for all services to become healthy")  # fmt: skip
    args = parser.parse_args(argv)
    cfg = StackConfig.load()
    try:
        if args.command == "up":
            up(cfg, args.timeout)
        elif args.command == "down":
            down(cfg)
        elif args.command == "status":
            return 0 if status(cfg) else 1
        elif args.command == "clean":
            clean(cfg)
        elif args.command == "env":
            print(shell_env(cfg))
        elif args.command.startswith("stream-"):
            stream(cfg, args.command.removeprefix("stream-"))
    except StackError as exc:
        print(f"\n[streamlab] ERROR: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\n[streamlab] interrupted; run the same command again to resume.", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
