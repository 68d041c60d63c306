"""The Spark standalone master (cluster profile only)."""

from __future__ import annotations

from streamlab.config import HOST, StackConfig
from streamlab.stack import spark
from streamlab.stack.service import Health, Layer, Service

PORTS = {
    "spark_master": (7077, "Spark standalone master"),
    "spark_master_ui": (8081, "Spark master web UI"),
}


def services(cfg: StackConfig) -> list[Service]:
    if not cfg.cluster:
        return []
    return [
        Service(
            "spark-master",
            Layer.SPARK,
            ("spark_master", "spark_master_ui"),
            lambda cfg, java: [
                spark.spark_class(cfg),
                "org.apache.spark.deploy.master.Master",
                "--host",
                HOST,
                "--port",
                str(cfg.ports["spark_master"]),
                "--webui-port",
                str(cfg.ports["spark_master_ui"]),
            ],  # fmt: skip
            health,
        )
    ]


def health(cfg: StackConfig) -> Health:
    state, why = spark.master_state(cfg)
    if state is None:
        return False, why
    return state.get("status") == "ALIVE", f"{state.get('status')}, {cfg.spark_master_url}"
