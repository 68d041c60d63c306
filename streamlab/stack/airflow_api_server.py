"""Airflow's api-server: the UI, the REST API and the execution API that task runners call."""

from __future__ import annotations

from streamlab.config import HOST, StackConfig
from streamlab.stack import airflow
from streamlab.stack.service import Service

PORTS = {"airflow_api": (8080, "Airflow api-server")}


def services(cfg: StackConfig) -> list[Service]:
    return [
        airflow.process(
            "airflow-api-server",
            "api-server",
            lambda cfg: [
                "api-server",
                "--host",
                HOST,
                "--port",
                str(cfg.ports["airflow_api"]),
                "--workers",
                "1",
            ],
            ports=("airflow_api",),
        )
    ]
