"""What Airflow's processes share: the command line, the health answer of the api-server, and
the schema migration that runs once PostgreSQL answers and before any of them starts.

Each process is its own module: airflow_api_server.py, airflow_scheduler.py,
airflow_dag_processor.py, airflow_triggerer.py.
"""

from __future__ import annotations

import importlib.metadata
import time
from collections.abc import Callable

from streamlab.config import StackConfig
from streamlab.stack import postgres
from streamlab.stack.service import Health, Layer, Service, http_json, run_step, say

NEEDS = ("postgres",)  # started once PostgreSQL answers and the schema is migrated


def process(
    name: str, component: str, args: Callable[[StackConfig], list[str]], ports: tuple[str, ...] = ()
) -> Service:
    """One Airflow process: `airflow <args>`; `component` is its key in the api-server's health."""
    return Service(
        name,
        Layer.AIRFLOW,
        ports,
        lambda cfg, java: [str(cfg.venv_bin / "airflow"), *args(cfg)],
        component_health(component),
        needs=NEEDS,
        prepare=migrate,
    )


def migrate(cfg: StackConfig) -> None:
    """Create Airflow's database in PostgreSQL if needed, and bring its schema to this Airflow."""
    # The installed version from its metadata: importing airflow would cost ~5 s of every `up`.
    airflow_version = importlib.metadata.version("apache-airflow")
    stamp = cfg.airflow_home / ".migrated"
    created = postgres.ensure_database(cfg, cfg.secrets(create=True)["postgres_password"])
    if created or not (stamp.exists() and stamp.read_text() == airflow_version):
        say(f"migrating the Airflow {airflow_version} metadata database")
        stamp.unlink(missing_ok=True)  # an interrupted migration is redone next time
        run_step(cfg, "airflow-db-migrate", [str(cfg.venv_bin / "airflow"), "db", "migrate"], timeout=300)
        stamp.write_text(airflow_version)


# url -> (when fetched, answer or None, why not). One answer serves the four Airflow checks of
# a `status` or of one round of `wait_healthy`, instead of four requests to a busy server.
_seen: dict[str, tuple[float, dict | None, str]] = {}


def api_health(cfg: StackConfig) -> tuple[dict | None, str]:
    url = f"{cfg.airflow_url}/api/v2/monitor/health"
    seen = _seen.get(url)
    if seen and time.monotonic() - seen[0] < 2:
        return seen[1], seen[2]
    try:
        # The one api-server worker can take seconds to answer while it serves task starts on 2
        # busy cores (a CI run saw 3.4 s); 3 s made a healthy server look down.
        answer, why = http_json(url, timeout=15), ""
    except TimeoutError:
        answer, why = None, "api-server did not answer within 15 s"
    except (OSError, ValueError) as exc:
        answer, why = None, f"api-server not answering ({exc})"
    _seen[url] = (time.monotonic(), answer, why)
    return answer, why


def component_health(component: str) -> Callable[[StackConfig], Health]:
    def check(cfg: StackConfig) -> Health:
        answer, why = api_health(cfg)
        if answer is None:
            return False, why
        if component == "api-server":
            return True, cfg.airflow_url
        status = (answer.get(component) or {}).get("status")
        return status == "healthy", f"{status or 'unknown'}"

    return check
