"""The Spark standalone worker (cluster profile only): 4 cores, 3 GiB for executors."""

from __future__ import annotations

from streamlab.config import HOST, StackConfig
from streamlab.stack import spark
from streamlab.stack.service import Health, Layer, Service

PORTS = {"spark_worker_ui": (8082, "Spark worker web UI")}


def services(cfg: StackConfig) -> list[Service]:
    if not cfg.cluster:
        return []
    return [
        Service(
            "spark-worker",
            Layer.SPARK,
            ("spark_worker_ui",),
            lambda cfg, java: [
                spark.spark_class(cfg),
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
            health,
        )
    ]


def health(cfg: StackConfig) -> Health:
    state, why = spark.master_state(cfg)
    if state is None:
        return False, why
    alive = int(state.get("aliveworkers", 0))
    return alive >= 1, f"{alive} alive worker(s), {state.get('cores', '?')} cores"
