"""Airflow's dag-processor: parses dags/ into the metadata database."""

from __future__ import annotations

from streamlab.config import StackConfig
from streamlab.stack import airflow
from streamlab.stack.service import Service

PORTS: dict[str, tuple[int, str]] = {}


def services(cfg: StackConfig) -> list[Service]:
    return [airflow.process("airflow-dag-processor", "dag_processor", lambda cfg: ["dag-processor"])]
