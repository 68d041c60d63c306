"""Airflow's scheduler, with the LocalExecutor: task processes (and their Spark drivers) are its children."""

from __future__ import annotations

from streamlab.config import StackConfig
from streamlab.stack import airflow
from streamlab.stack.service import Service

PORTS: dict[str, tuple[int, str]] = {}


def services(cfg: StackConfig) -> list[Service]:
    # Its log server would bind every interface; the api-server reads LocalExecutor logs as files.
    return [airflow.process("airflow-scheduler", "scheduler", lambda cfg: ["scheduler", "--skip-serve-logs"])]
