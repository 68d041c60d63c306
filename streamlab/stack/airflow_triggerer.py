"""Airflow's triggerer: runs deferred tasks' triggers."""

from __future__ import annotations

from streamlab.config import StackConfig
from streamlab.stack import airflow
from streamlab.stack.service import Service

PORTS: dict[str, tuple[int, str]] = {}


def services(cfg: StackConfig) -> list[Service]:
    # Its log server would bind every interface; the api-server reads LocalExecutor logs as files.
    return [airflow.process("airflow-triggerer", "triggerer", lambda cfg: ["triggerer", "--skip-serve-logs"])]
