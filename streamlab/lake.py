"""Where the platform's data lives on HDFS, and the Airflow Assets that name it: the one place.

DAGs, Spark jobs, the landing protocol, the demo and the benchmarks import these names; none of
them spells a path or an Asset URI itself. Moving the lake is a change to this file only.

    /data/raw/<topic>/dt=YYYY-MM-DD/hr=HH/part-...parquet   landed records (kafka_to_hdfs_landing)
    /data/raw/<topic>/_landing/{log,staging,compact}/       the landing's own state (hidden: `_`)
    /data/quarantine/<topic>/dt=YYYY-MM-DD/hr=HH/...         records that could not be decoded
    /data/_landing/reports/<run id>.json                     one report per landing run
    /data/curated/wordcount/dt=YYYY-MM-DD/                   daily word count (hdfs_batch_reprocessing)

Assets (the scheme is not `hdfs://`: Airflow's HDFS asset URIs must name the NameNode, which
only the connection may hold):

    raw/<topic>         streamlab-raw://data/raw/<topic>
    curated/wordcount   streamlab-curated://data/curated/wordcount

Standard library only: this module runs in Airflow tasks, in DAG parsing and in Spark drivers.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from datetime import datetime, timezone

RAW_ROOT = "/data/raw"
QUARANTINE_ROOT = "/data/quarantine"
REPORTS_ROOT = "/data/_landing/reports"
WORDCOUNT_ROOT = "/data/curated/wordcount"

LANDING_DIR = "_landing"  # per topic, beside the data; hidden from readers by its `_`
SUMMARY_FILE = "_SUCCESS"  # the batch word count's JSON summary, written last

HOUR_DIR = re.compile(r"^dt=(\d{4}-\d{2}-\d{2})/hr=(\d{2})$")


def day_dir(day: str) -> str:
    """The partition folder of a UTC day (`YYYY-MM-DD`)."""
    return f"dt={day}"


def hour_dir(ts_ms: int) -> str:
    """The partition folder of the UTC hour of a timestamp in ms: `dt=YYYY-MM-DD/hr=HH`."""
    t = datetime.fromtimestamp(ts_ms / 1000, tz=timezone.utc)
    return f"{day_dir(f'{t:%Y-%m-%d}')}/hr={t:%H}"


def raw_day(topic: str, day: str, raw_root: str = RAW_ROOT) -> str:
    """Folder of one topic's landed records of one day."""
    return posixpath.join(raw_root, topic, day_dir(day))


def wordcount_day(day: str, root: str = WORDCOUNT_ROOT) -> str:
    """Folder of one day's published word count."""
    return posixpath.join(root, day_dir(day))


def sanitize(run_id: str) -> str:
    """A run id as one safe path component (HDFS refuses ':' in names)."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", run_id).lstrip("._") or "run"


def report_path(run_id: str, reports_root: str = REPORTS_ROOT) -> str:
    """The landing report of one run."""
    return posixpath.join(reports_root, f"{sanitize(run_id)}.json")


@dataclass(frozen=True)
class TopicPaths:
    """Every folder of one landed topic."""

    topic: str
    raw_root: str = RAW_ROOT
    quarantine_root: str = QUARANTINE_ROOT

    @property
    def root(self) -> str:
        return posixpath.join(self.raw_root, self.topic)

    @property
    def quarantine(self) -> str:
        return posixpath.join(self.quarantine_root, self.topic)

    @property
    def landing(self) -> str:
        return posixpath.join(self.root, LANDING_DIR)

    @property
    def log_dir(self) -> str:
        return posixpath.join(self.landing, "log")

    @property
    def compact_dir(self) -> str:
        return posixpath.join(self.landing, "compact")

    def staging(self, seq: int) -> str:
        return posixpath.join(self.landing, "staging", f"{seq:012d}")

    def record(self, seq: int, kind: str) -> str:
        return posixpath.join(self.log_dir, f"{seq:012d}.{kind}.json")


# ---- Airflow Assets: keyword arguments of `airflow.sdk.Asset` (no Airflow import here) --------


def _uri(scheme: str, path: str) -> str:
    return f"{scheme}://{path.strip('/')}"


def raw_asset(topic: str, raw_root: str = RAW_ROOT) -> dict[str, str]:
    """`Asset(**raw_asset(topic))`: the landed records of a topic."""
    return {"name": f"raw/{topic}", "uri": _uri("streamlab-raw", posixpath.join(raw_root, topic))}


WORDCOUNT_ASSET: dict[str, str] = {
    "name": "curated/wordcount",
    "uri": _uri("streamlab-curated", WORDCOUNT_ROOT),
}
