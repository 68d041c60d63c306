"""The HDFS NameNode (one in both profiles)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from streamlab.config import StackConfig
from streamlab.stack import hadoop
from streamlab.stack.service import Health, Layer, Service, run_step, say

PORTS = {
    "namenode_rpc": (8020, "HDFS NameNode RPC"),
    "namenode_http": (9870, "HDFS NameNode web UI / WebHDFS"),
}
MAIN = "org.apache.hadoop.hdfs.server.namenode.NameNode"


def services(cfg: StackConfig) -> list[Service]:
    return [
        Service(
            "namenode",
            Layer.NAMENODE,
            ("namenode_rpc", "namenode_http"),
            lambda cfg, java: hadoop.java_cmd(cfg, java, MAIN, heap="192m"),
            health,
        )
    ]


def write_config(cfg: StackConfig) -> None:
    hadoop.write_config(cfg)  # the DataNodes and HDFS clients read the same files


def format_storage(cfg: StackConfig, java: str) -> None:
    name_dir = hadoop.name_dir(cfg)
    if formatted(name_dir):
        return
    say("formatting HDFS NameNode (once)")
    shutil.rmtree(name_dir, ignore_errors=True)
    # A DataNode formatted for another namespace would refuse to join.
    for dn in cfg.datanodes:
        shutil.rmtree(hadoop.datanode_data_dir(cfg, dn), ignore_errors=True)
    run_step(cfg, "namenode-format", hadoop.java_cmd(cfg, java, MAIN, "-format", "-force", "-nonInteractive"))


def formatted(name_dir: Path) -> bool:
    """True once `namenode -format` completed: it writes VERSION first and the image last, so a
    format interrupted in between (Ctrl-C on a first `up`) left a VERSION the NameNode cannot start
    from ("No valid image files found")."""
    current = name_dir / "current"
    return (current / "VERSION").exists() and any(
        re.fullmatch(r"fsimage_\d+", p.name) for p in current.glob("fsimage_*")
    )


def health(cfg: StackConfig) -> Health:
    try:
        info = hadoop.namenode_info(cfg)
    except (OSError, ValueError, KeyError, IndexError) as exc:
        return False, f"web UI not answering ({exc})"
    if info.get("Safemode"):
        return False, "in safe mode"
    return True, f"up, version {info.get('Version', '?').split(',')[0]}"
