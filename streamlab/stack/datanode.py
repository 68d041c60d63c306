"""HDFS DataNodes: one in the local profile, two in the cluster profile (`StackConfig.datanodes`).
Their config is written with the NameNode's (hadoop.write_config); the NameNode formats them."""

from __future__ import annotations

import json

from streamlab.config import HOST, DataNode, StackConfig
from streamlab.stack import hadoop
from streamlab.stack.service import Health, Layer, Service

PORTS = {
    "datanode": (9866, "HDFS DataNode data transfer"),
    "datanode_http": (9864, "HDFS DataNode web"),
    "datanode_ipc": (9867, "HDFS DataNode IPC"),
    # cluster profile only
    "datanode_2": (9876, "HDFS DataNode 2 data transfer"),
    "datanode_2_http": (9874, "HDFS DataNode 2 web"),
    "datanode_2_ipc": (9877, "HDFS DataNode 2 IPC"),
}
MAIN = "org.apache.hadoop.hdfs.server.datanode.DataNode"


def services(cfg: StackConfig) -> list[Service]:
    return [
        Service(
            dn.service,
            Layer.DATANODE,
            (dn.port, dn.http_port, dn.ipc_port),
            lambda cfg, java, dn=dn: hadoop.java_cmd(cfg, java, MAIN, heap="128m", conf_name=dn.conf),
            lambda cfg, dn=dn: health(cfg, dn),
        )
        for dn in cfg.datanodes
    ]


def health(cfg: StackConfig, dn: DataNode) -> Health:
    try:
        live = json.loads(hadoop.namenode_info(cfg)["LiveNodes"])
    except (OSError, ValueError, KeyError, IndexError) as exc:
        return False, f"NameNode not answering ({exc})"
    addr = f"{HOST}:{cfg.ports[dn.port]}"
    if not any(node.get("xferaddr") == addr for node in live.values()):
        return False, f"not registered with the NameNode ({len(live)} live DataNode(s))"
    return True, f"live ({len(live)} live DataNode(s) in all)"
