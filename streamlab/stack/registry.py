"""Every module of the stack, in one list: adding a service is a module (see service.py) and a line here."""

from __future__ import annotations

from types import ModuleType

from streamlab.config import StackConfig
from streamlab.stack import (
    airflow_api_server,
    airflow_dag_processor,
    airflow_scheduler,
    airflow_triggerer,
    datanode,
    kafka,
    namenode,
    postgres,
    spark,
    spark_master,
    spark_worker,
)
from streamlab.stack.service import Service

MODULES: tuple[ModuleType, ...] = (
    postgres,
    kafka,
    namenode,
    datanode,
    spark,
    spark_master,
    spark_worker,
    airflow_api_server,
    airflow_scheduler,
    airflow_dag_processor,
    airflow_triggerer,
)


def port_defaults() -> dict[str, tuple[int, str]]:
    """port key -> (default port, what listens there), over every profile."""
    return {key: spec for module in MODULES for key, spec in module.PORTS.items()}


def services(cfg: StackConfig) -> list[Service]:
    """The processes of this stack's profile, in start order (by layer, then registry order)."""
    found = [svc for module in MODULES for svc in module.services(cfg)]
    return sorted(found, key=lambda svc: svc.layer)


def hooks(name: str) -> list:
    """The modules' optional `name` functions (check_state, write_config, format_storage), in order."""
    return [getattr(module, name) for module in MODULES if hasattr(module, name)]
