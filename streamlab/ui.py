"""The Streamlab page inside the Airflow UI: a FastAPI app the api-server mounts at /streamlab.

`plugins/streamlab_plugin.py` registers it with a nav entry. Airflow does not protect plugin
apps: every route here depends on `get_user`, Airflow's own check of the caller's JWT (the UI's
`_token` cookie, or an `Authorization: Bearer` header), so a caller without a valid login gets
401 (no token) or 403 (invalid token). Responses carry offsets, counts and run ids, never a
connection's settings.

Kafka and HDFS are reached through the connections `kafka_default` (its extra is the client
config) and `webhdfs_default`; Airflow's runs are read from its metadata database, in-process.
The sections (streamlab/overview.py) are refreshed in the background at most every
`REFRESH_S` seconds: a request answers from the last snapshot, so the page does not wait on
Kafka, HDFS or the size of the landing history.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import HTMLResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from streamlab import kafka_groups, overview
from streamlab.overview import GroupOffset, PartitionOffsets

log = logging.getLogger("streamlab.ui")

REFRESH_S = 5.0
HUNG_S = 60.0  # a refresh running longer is considered stuck: the next request starts another
HDFS_TIMEOUT_S = 10.0
KAFKA_TIMEOUT_S = 5.0
PAGE = Path(__file__).with_name("ui_page.html")


# ---- Kafka, through the connection `kafka_default` ------------------------------------------


class KafkaClient:
    """`overview.KafkaReader` over confluent_kafka, with the connection's client config."""

    def __init__(self, config: Mapping[str, Any]):
        from confluent_kafka.admin import AdminClient

        self.config = {k: v for k, v in config.items() if "." in k or k == "debug"}  # librdkafka keys only
        self.admin = AdminClient(self.config)
        self._consumer = None
        # The sections refresh in their own threads; one consumer serves them one at a time.
        self._consumer_lock = threading.Lock()
        self._words_positions: dict[int, int] = {}

    def consumer(self):
        from confluent_kafka import Consumer

        if self._consumer is None:
            # Reads by assignment only: this group id never joins, never commits.
            self._consumer = Consumer(
                {
                    **self.config,
                    "group.id": "streamlab-ui",
                    "enable.auto.commit": False,
                    "enable.partition.eof": True,
                    "auto.offset.reset": "earliest",  # a position retention went past
                }
            )
        return self._consumer

    def offsets(self, topics: Sequence[str]) -> dict[str, dict[int, PartitionOffsets]]:
        from confluent_kafka import TopicPartition
        from confluent_kafka.admin import OffsetSpec

        meta = self.admin.list_topics(timeout=KAFKA_TIMEOUT_S).topics
        tps = [
            TopicPartition(t, p)
            for t in topics
            if t in meta and not meta[t].error
            for p in meta[t].partitions
        ]
        if not tps:
            return {}
        ends = {}
        for spec_name, spec in (("earliest", OffsetSpec.earliest()), ("latest", OffsetSpec.latest())):
            futures = self.admin.list_offsets({tp: spec for tp in tps}, request_timeout=KAFKA_TIMEOUT_S)
            for tp, f in futures.items():
                ends.setdefault((tp.topic, tp.partition), {})[spec_name] = f.result().offset
        out: dict[str, dict[int, PartitionOffsets]] = {}
        for (t, p), e in ends.items():
            out.setdefault(t, {})[p] = PartitionOffsets(e["earliest"], e["latest"])
        return out

    def group_offsets(self, group: str, topics: Sequence[str]) -> dict[str, dict[int, GroupOffset]]:
        out: dict[str, dict[int, GroupOffset]] = {}
        for topic in topics:
            found = kafka_groups.group_offsets(self.admin, group, topic, KAFKA_TIMEOUT_S)
            if found:
                out[topic] = {p: GroupOffset(offset, meta) for p, (offset, meta) in found.items()}
        return out

    def timestamps_at(self, wanted: Mapping[tuple[str, int], int]) -> dict[tuple[str, int], int]:
        from confluent_kafka import TIMESTAMP_NOT_AVAILABLE, TopicPartition

        found: dict[tuple[str, int], int] = {}
        deadline = time.monotonic() + KAFKA_TIMEOUT_S
        with self._consumer_lock:
            c = self.consumer()
            c.assign([TopicPartition(t, p, o) for (t, p), o in wanted.items()])
            try:
                while len(found) < len(wanted) and time.monotonic() < deadline:
                    msg = c.poll(0.5)
                    if msg is None or msg.error():
                        continue
                    key = (msg.topic(), msg.partition())
                    kind, ts = msg.timestamp()
                    if key not in found and kind != TIMESTAMP_NOT_AVAILABLE:
                        found[key] = ts
            finally:
                c.unassign()
        return found

    def read_new(
        self, topic: str, sink: Callable[[list[tuple[bytes | None, bytes | None]]], None], max_s: float = 3.0
    ) -> bool:
        """Hand the records of `topic` appended since the last call (all of them the first time) to
        `sink`, a batch at a time. True, and nothing read, when the topic started over (re-created:
        its offsets are not where the last call left them); the next call reads it from the start."""
        from confluent_kafka import OFFSET_BEGINNING, KafkaError, TopicPartition

        parts = self.offsets([topic]).get(topic, {})
        seen = self._words_positions
        if any(not (o.earliest <= seen[p] <= o.latest) for p, o in parts.items() if p in seen):
            seen.clear()
            return True
        todo = {p: o.latest for p, o in parts.items() if seen.get(p, o.earliest) < o.latest}
        if not todo:
            return False
        deadline = time.monotonic() + max_s
        with self._consumer_lock:
            c = self.consumer()
            c.assign([TopicPartition(topic, p, seen.get(p, OFFSET_BEGINNING)) for p in todo])
            try:
                while todo and time.monotonic() < deadline:
                    batch = []
                    for msg in c.consume(500, 0.5):
                        if msg.error():
                            if msg.error().code() == KafkaError._PARTITION_EOF:
                                todo.pop(msg.partition(), None)
                            continue
                        batch.append((msg.key(), msg.value()))
                        seen[msg.partition()] = msg.offset() + 1
                        if msg.offset() + 1 >= todo.get(msg.partition(), 0):
                            todo.pop(msg.partition(), None)
                    sink(batch)
            finally:
                c.unassign()
        return False


# ---- Airflow's runs, from its metadata database ---------------------------------------------


class AirflowRuns:
    """The runs the page needs, read in the api-server's process through Airflow's ORM."""

    def runs(self, dag_id: str, limit: int = 20) -> list[dict[str, Any]]:
        from airflow.models.dagrun import DagRun
        from airflow.utils.session import create_session
        from sqlalchemy import select

        with create_session() as session:
            rows = session.scalars(
                select(DagRun).where(DagRun.dag_id == dag_id).order_by(DagRun.id.desc()).limit(limit)
            ).all()
            return [
                {
                    "run_id": r.run_id,
                    "state": str(r.state.value if hasattr(r.state, "value") else r.state),
                    "run_type": str(getattr(r.run_type, "value", r.run_type)),
                    "queued_at": _iso(r.queued_at),
                    "start_date": _iso(r.start_date),
                    "end_date": _iso(r.end_date),
                    "data_interval_start": _iso(r.data_interval_start),
                    "conf": r.conf or {},
                }
                for r in rows
            ]

    def known(self, dag_id: str, run_ids: Sequence[str]) -> set[str]:
        """Which of these run ids are runs of the DAG in Airflow."""
        from airflow.models.dagrun import DagRun
        from airflow.utils.session import create_session
        from sqlalchemy import select

        if not run_ids:
            return set()
        with create_session() as session:
            return set(
                session.scalars(
                    select(DagRun.run_id).where(DagRun.dag_id == dag_id, DagRun.run_id.in_(list(run_ids)))
                ).all()
            )

    def paused(self, dag_id: str) -> bool | None:
        from airflow.models.dag import DagModel
        from airflow.utils.session import create_session
        from sqlalchemy import select

        with create_session() as session:
            return session.scalar(select(DagModel.is_paused).where(DagModel.dag_id == dag_id))

    def task(self, dag_id: str, run_id: str, task_id: str) -> dict[str, Any] | None:
        from airflow.models.taskinstance import TaskInstance
        from airflow.utils.session import create_session
        from sqlalchemy import select

        with create_session() as session:
            ti = session.scalars(
                select(TaskInstance).where(
                    TaskInstance.dag_id == dag_id,
                    TaskInstance.run_id == run_id,
                    TaskInstance.task_id == task_id,
                )
            ).first()
            if ti is None:
                return None
            return {
                "state": str(getattr(ti.state, "value", ti.state)) if ti.state else None,
                "try_number": ti.try_number,
                "start_ms": int(ti.start_date.timestamp() * 1000) if ti.start_date else None,
            }


def _iso(dt) -> str | None:
    return dt.isoformat() if dt else None


# ---- the sections, refreshed in the background ----------------------------------------------


class Snapshot:
    """The last value of `compute`, recomputed in a background thread when older than `max_age`.

    Only the first request waits; later ones get the last value at once (with its age), and a
    failing refresh keeps the last good value beside the error."""

    def __init__(self, compute: Callable[[], Any], max_age: float = REFRESH_S, hung_after: float = HUNG_S):
        self.compute = compute
        self.max_age = max_age
        self.hung_after = hung_after
        self._lock = threading.Lock()
        self._started: float | None = None  # when the running refresh started
        self.value: Any = None
        self.error: str | None = None
        self.at = 0.0  # when the last refresh ended (0: none yet)

    def _refresh(self) -> None:
        try:
            value, error = self.compute(), None
        except Exception as e:  # shown on the page: a service down must not break the others
            log.warning("streamlab page: refresh failed: %s", e, exc_info=True)
            value, error = None, f"{type(e).__name__}: {str(e)[:300]}"
        with self._lock:
            if error is None:
                self.value = value
            self.error = error
            self.at = time.monotonic()
            self._started = None

    def get(self) -> dict[str, Any]:
        now = time.monotonic()
        with self._lock:
            # A refresh stuck on a service that does not answer is given up on, not waited for.
            running = self._started is not None and now - self._started < self.hung_after
            start = not running and (self.at == 0.0 or now - self.at > self.max_age)
            first = start and self.at == 0.0 and self._started is None
            if start:
                self._started = now
        if first:
            self._refresh()
        elif start:
            threading.Thread(target=self._refresh, daemon=True, name="streamlab-ui-refresh").start()
        with self._lock:
            never = self.at == 0.0
            return {
                "data": self.value,
                "error": self.error,
                "age_s": None if never else round(time.monotonic() - self.at, 1),
                "loading": never and self.error is None,
            }


class Sections:
    """The four sections of the page over live clients, made on first use (not at import)."""

    def __init__(self):
        self._kafka: KafkaClient | None = None
        self._fs = None
        self._clients_lock = threading.Lock()  # the sections refresh in their own threads
        self.airflow = AirflowRuns()
        self.cache = overview.JsonCache()
        self.words = overview.TopWords()
        self._words_lock = threading.Lock()
        self.snapshots = {
            "topics": Snapshot(self.topics),
            "landing": Snapshot(self.landing),
            "streaming": Snapshot(self.streaming),
            "batch": Snapshot(self.batch),
        }

    @property
    def kafka(self) -> KafkaClient:
        with self._clients_lock:
            if self._kafka is None:
                from airflow.sdk import BaseHook

                self._kafka = KafkaClient(BaseHook.get_connection("kafka_default").extra_dejson)
            return self._kafka

    @property
    def fs(self):
        with self._clients_lock:
            if self._fs is None:
                from airflow.providers.apache.hdfs.hooks.webhdfs import WebHDFSHook

                from streamlab.landing import WebHdfsFileSystem

                client = WebHDFSHook(webhdfs_conn_id="webhdfs_default").get_conn()
                # The hook's client waits forever on a NameNode that does not answer (hdfs.Client
                # keeps the timeout of each request in `_timeout`).
                client._timeout = HDFS_TIMEOUT_S
                self._fs = WebHdfsFileSystem(client)
            return self._fs

    def topics(self) -> list[dict[str, Any]]:
        from streamlab.topics import load_topics

        params = overview.streaming_params(self.airflow.runs(overview.STREAMING_DAG, 1))
        return overview.topics_section(load_topics(), self.kafka, self.fs, params, overview.now_ms())

    def landing(self) -> dict[str, Any]:
        return overview.landing_section(
            self.fs,
            self.cache,
            self.airflow.runs(overview.LANDING_DAG, 10),
            lambda run_ids: self.airflow.known(overview.LANDING_DAG, run_ids),
        )

    def streaming(self) -> dict[str, Any]:
        runs = self.airflow.runs(overview.STREAMING_DAG, 1)
        task = (
            self.airflow.task(overview.STREAMING_DAG, runs[0]["run_id"], overview.STREAMING_TASK)
            if runs
            else None
        )
        output = overview.streaming_params(runs)["output_topic"]
        with self._words_lock:
            if self.kafka.read_new(output, self.words.update):
                self.words = overview.TopWords()  # the topic started over: read it again
                self.kafka.read_new(output, self.words.update)
            top = self.words.top(10)
        paused = self.airflow.paused(overview.STREAMING_DAG)
        return overview.streaming_section(self.kafka, runs, paused, task, top, overview.now_ms())

    def batch(self) -> list[dict[str, Any]]:
        return overview.batch_section(self.fs, self.cache, self.airflow.runs(overview.BATCH_DAG, 60))


# ---- the app --------------------------------------------------------------------------------


_bearer = HTTPBearer(auto_error=False)


async def require_login(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Any:
    """Airflow's own check of the caller (`get_user`: the Bearer JWT, else the UI's cookie), imported
    on the first request: every process that loads plugins (task runners too) imports this module,
    and the API's security module pulls in the whole API server."""
    from airflow.api_fastapi.core_api.security import get_user

    return await get_user(request=request, _oauth_token=None, bearer_credentials=credentials)


def create_app(sections: Sections | None = None) -> FastAPI:
    sections = sections or Sections()
    # Every route, the page included, needs a valid Airflow login.
    app = FastAPI(
        title="Streamlab",
        dependencies=[Depends(require_login)],
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.sections = sections  # bench/ui_bench.py refreshes them directly

    @app.get("/", response_class=HTMLResponse)
    def page() -> str:
        return PAGE.read_text()

    @app.get("/api/overview")
    def everything() -> dict[str, Any]:
        return {name: snap.get() for name, snap in sections.snapshots.items()}

    for name, snap in sections.snapshots.items():
        app.add_api_route(f"/api/{name}", snap.get, methods=["GET"], name=name)

    return app
