"""What the NameNode and the DataNodes share: their JVM command line and the Hadoop config
files (`conf/hadoop`, which HDFS clients read too, and one folder per extra DataNode)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from streamlab.config import HOST, DataNode, StackConfig
from streamlab.stack.java import SERVER_JVM_FLAGS
from streamlab.stack.service import http_json

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


def java_cmd(
    cfg: StackConfig, java: str, main: str, *args: str, heap: str = "256m", conf_name: str = "hadoop"
) -> list[str]:
    conf = cfg.conf_dir / conf_name
    return [
        java, f"-Xmx{heap}", *SERVER_JVM_FLAGS, "-Djava.awt.headless=true", *JDK17_OPENS,
        f"-Dhadoop.log.dir={cfg.log_dir}", f"-Dlog4j.configuration=file:{conf / 'log4j.properties'}",
        "-cp", f"{conf}{os.pathsep}{cfg.jars('hadoop')}/*", main, *args,
    ]  # fmt: skip


def name_dir(cfg: StackConfig) -> Path:
    return cfg.home / "data" / "hdfs" / "name"


def datanode_data_dir(cfg: StackConfig, dn: DataNode) -> Path:
    return cfg.home / "data" / "hdfs" / (dn.service if cfg.cluster else "data")


def _xml(props: dict[str, object]) -> str:
    rows = "\n".join(f"  <property><name>{k}</name><value>{v}</value></property>" for k, v in props.items())
    return f'<?xml version="1.0"?>\n<configuration>\n{rows}\n</configuration>\n'


def write_config(cfg: StackConfig) -> None:
    p = cfg.ports
    conf = cfg.conf_dir / "hadoop"
    conf.mkdir(parents=True, exist_ok=True)
    (conf / "core-site.xml").write_text(
        _xml(
            {
                "fs.defaultFS": cfg.hdfs_uri,
                "hadoop.tmp.dir": cfg.home / "data" / "hadoop-tmp",
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
                    "dfs.namenode.name.dir": f"file://{name_dir(cfg)}",
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
                    # WebHDFS writes go through the DataNode's own HDFS client: its file close
                    # waits 400 ms by default before asking again whether the block is complete
                    # (the same setting as Spark's, spark-defaults.conf); a small JSON record
                    # through WebHDFS then takes ~0.4 s instead of ~20 ms.
                    "dfs.client.block.write.locateFollowingBlock.initial.delay.ms": 20,
                }
            )
        )
    (conf / "log4j.properties").write_text(
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
        web_inf = conf / "webapps" / app / "WEB-INF"
        web_inf.mkdir(parents=True, exist_ok=True)
        (web_inf / "web.xml").write_text(
            '<?xml version="1.0"?>\n<web-app xmlns="http://xmlns.jcp.org/xml/ns/javaee" version="3.1"/>\n'
        )
    (conf / "webapps" / "hdfs" / "index.html").write_text(
        "<html><body><h1>streamlab HDFS NameNode</h1><p>The HTML UI is not bundled in the "
        'Maven artifacts. Use <a href="/jmx">/jmx</a> and <a href="/webhdfs/v1/?op=LISTSTATUS">'
        "WebHDFS</a>, or <code>bin/hdfs dfs</code>.</p></body></html>\n"
    )
    # Extra DataNodes get their own folder: same core-site, log4j and webapps, own ports.
    for dn in cfg.datanodes:
        if dn.conf != "hadoop":
            for name in ("core-site.xml", "log4j.properties"):
                shutil.copy(conf / name, cfg.conf_dir / dn.conf / name)
            shutil.copytree(conf / "webapps", cfg.conf_dir / dn.conf / "webapps", dirs_exist_ok=True)


def namenode_info(cfg: StackConfig) -> dict:
    """The NameNode's NameNodeInfo bean (JMX over HTTP); raises OSError/ValueError/... when down."""
    return http_json(f"{cfg.webhdfs_url}/jmx?qry=Hadoop:service=NameNode,name=NameNodeInfo")["beans"][0]
