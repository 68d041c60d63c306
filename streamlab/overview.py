"""What the Streamlab page of the Airflow UI shows, gathered from Kafka, HDFS and Airflow's runs.

Each section is a pure function of what it reads, so the unit tests feed it a local folder and
plain dictionaries; `plugins/streamlab_plugin.py` serves them (with a cache) from the api-server,
where Kafka and HDFS are reached through the connections `kafka_default` and `webhdfs_default`.

    topics     per topic of dags/topics.yaml and partition: earliest and latest offsets, the
               landing's committed end (its HDFS commit record, the source of truth), lag in
               records and the age of the oldest record not landed; the streaming job's group
               offset and lag
    landing    the last runs' reports (/data/_landing/reports/): records, bytes, files,
               quarantined per run, and the state of the latest Airflow runs
    streaming  the streaming word count: state (running, restarting, stopped) from its Airflow
               run and task, its progress from the metadata of its consumer-group commits, the
               top words of `wordcounts`
    batch      the curated days (/data/curated/wordcount/dt=...): `_SUCCESS` summary and run state
"""

from __future__ import annotations

import heapq
import json
import posixpath
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from streamlab import lake
from streamlab.landing import FileStatus, FileSystem, latest_commit

LANDING_DAG = "kafka_to_hdfs_landing"
BATCH_DAG = "hdfs_batch_reprocessing"
STREAMING_DAG = "streaming_wordcount"
STREAMING_TASK = "wordcount_stream"
# The streaming DAG's param defaults (tests/dags checks they match); a run's conf overrides them.
STREAMING_DEFAULTS = {"input_topics": "Hello-Kafka", "group_id": "wordcount", "output_topic": "wordcounts"}
HISTORY_RUNS = 30  # landing runs in the chart
STALE_PROGRESS_S = 120  # an alive query reports at least every ~10 s, also when idle


# ---- what the sections read ---------------------------------------------------------------


@dataclass(frozen=True)
class PartitionOffsets:
    earliest: int
    latest: int


@dataclass(frozen=True)
class GroupOffset:
    offset: int
    metadata: dict[str, Any] = field(default_factory=dict)


class KafkaReader(Protocol):
    def offsets(self, topics: Sequence[str]) -> dict[str, dict[int, PartitionOffsets]]:
        """Partitions of each topic that exists, with earliest and latest offsets."""

    def group_offsets(self, group: str, topics: Sequence[str]) -> dict[str, dict[int, GroupOffset]]:
        """A consumer group's committed offsets (and their metadata) for these topics."""

    def timestamps_at(self, wanted: Mapping[tuple[str, int], int]) -> dict[tuple[str, int], int]:
        """Timestamp (ms) of the record at each (topic, partition) offset, where one was read."""


def run_link(dag_id: str, run_id: str | None) -> str | None:
    """The Airflow UI page of a DAG run (relative to the UI's root)."""
    if not run_id:
        return None
    from urllib.parse import quote

    return f"/dags/{dag_id}/runs/{quote(run_id, safe='')}"


def _public_run(dag_id: str, run: Mapping[str, Any]) -> dict[str, Any]:
    """A run as the page shows it: its conf (user input, unused here) stays out."""
    return {k: v for k, v in run.items() if k != "conf"} | {"link": run_link(dag_id, run.get("run_id"))}


def _age_s(now_ms: int, ts_ms: int | None) -> float | None:
    return None if ts_ms is None else round(max(0, now_ms - ts_ms) / 1000, 1)


# ---- topics -------------------------------------------------------------------------------


def landing_committed(fs: FileSystem, topic: str) -> dict[str, Any] | None:
    """The landing's last commit of a topic: {partition: end}, seq, run id, commit time."""
    commit = latest_commit(fs, lake.TopicPaths(topic))
    if commit is None:
        return None
    return {
        "ends": {int(p): int(s["end"]) for p, s in commit["partitions"].items()},
        "seq": commit["seq"],
        "run_id": commit.get("run_id"),
        "committed_at_ms": commit.get("committed_at_ms"),
    }


def topics_section(
    specs: Sequence[Any],
    kafka: KafkaReader,
    fs: FileSystem,
    streaming: Mapping[str, Any],
    now_ms: int,
) -> list[dict[str, Any]]:
    """One row per topic of the topics file, one sub-row per partition."""
    names = [s.name for s in specs]
    offsets = kafka.offsets(names)
    stream_topics = [t for t in streaming["input_topics"].split(",") if t]
    stream_group = kafka.group_offsets(streaming["group_id"], stream_topics) if stream_topics else {}
    commits = {s.name: landing_committed(fs, s.name) for s in specs if s.land}
    # The oldest record not landed is the one at the landing's committed end (or the earliest
    # offset Kafka still has, when retention went past it).
    wanted = {}
    for name, commit in commits.items():
        for p, o in offsets.get(name, {}).items():
            start = max((commit or {}).get("ends", {}).get(p, 0), o.earliest)
            if start < o.latest:
                wanted[(name, p)] = start
    stamps = kafka.timestamps_at(wanted) if wanted else {}
    rows = []
    for spec in specs:
        parts = offsets.get(spec.name)
        commit = commits.get(spec.name)
        row: dict[str, Any] = {
            "topic": spec.name,
            "exists": parts is not None,
            "land": spec.land,
            "streamed": spec.name in stream_topics,
            "landing_seq": (commit or {}).get("seq"),
            "landing_run": run_link(LANDING_DAG, (commit or {}).get("run_id")),
            "partitions": [],
        }
        for p, o in sorted((parts or {}).items()):
            part: dict[str, Any] = {"partition": p, "earliest": o.earliest, "latest": o.latest}
            if spec.land:
                landed = (commit or {}).get("ends", {}).get(p, 0)
                part["landed"] = landed if commit else None
                part["landing_lag"] = max(0, o.latest - max(landed, o.earliest))
                part["oldest_unlanded_age_s"] = _age_s(now_ms, stamps.get((spec.name, p)))
            if spec.name in stream_topics:
                g = stream_group.get(spec.name, {}).get(p)
                part["streamed"] = g.offset if g else None
                part["streaming_lag"] = (o.latest - max(g.offset, o.earliest)) if g else None
            row["partitions"].append(part)
        for key in ("latest", "landing_lag", "streaming_lag"):
            values = [x.get(key) for x in row["partitions"]]
            row[key] = sum(values) if values and None not in values else None
        rows.append(row)
    return rows


# ---- landing history ----------------------------------------------------------------------


class JsonCache:
    """Parsed JSON files by (path, length, modification time): a report is read once."""

    def __init__(self, limit: int = 2000):
        self.limit = limit
        self._items: dict[tuple[str, int, int], Any] = {}

    def read(self, fs: FileSystem, st: FileStatus) -> Any:
        key = (st.path, st.length, st.mtime_ms)
        value = self._items.get(key)
        if value is None:
            try:
                value = json.loads(fs.read(st.path).decode())
            except (OSError, ValueError) as e:
                return {"unreadable": str(e)[:200]}
            if len(self._items) >= self.limit:
                self._items.clear()
            self._items[key] = value
        return value


def report_summary(report: Mapping[str, Any], mtime_ms: int, airflow_run: bool = True) -> dict[str, Any]:
    """One landing run from its report: totals over its topics; linked when Airflow ran it (a run
    by hand, `spark-submit` of the job, has a report but no Airflow page)."""
    totals = {k: 0 for k in ("records", "bytes", "files", "quarantined")}
    for t in report.get("topics", []):
        for k in totals:
            totals[k] += int((t.get("totals") or {}).get(k, 0))
    errors = [
        f"{t['topic']}: {t.get('error')}" for t in report.get("topics", []) if t.get("status") == "error"
    ]
    return {
        "run_id": report.get("run_id"),
        "status": report.get("status", "unreadable" if "unreadable" in report else None),
        "reported_at_ms": mtime_ms,
        "topics": [t.get("topic") for t in report.get("topics", [])],
        **totals,
        "errors": errors,
        "link": run_link(LANDING_DAG, report.get("run_id")) if airflow_run else None,
    }


def landing_section(
    fs: FileSystem,
    cache: JsonCache,
    runs: Sequence[Mapping[str, Any]],
    airflow_runs: Callable[[Sequence[str]], set[str]] = set,
    limit: int = HISTORY_RUNS,
) -> dict[str, Any]:
    """The last `limit` reports, oldest first, and the latest Airflow runs of the landing DAG.
    `airflow_runs(run_ids)` says which of them Airflow ran.

    Only the newest reports are read: the folder listing is one call however long the history."""
    files = [st for st in fs.list(lake.REPORTS_ROOT) if not st.is_dir and st.name.endswith(".json")]
    newest = heapq.nlargest(limit, files, key=lambda st: (st.mtime_ms, st.name))
    reports = [(cache.read(fs, st), st.mtime_ms) for st in reversed(newest)]
    known = airflow_runs([r.get("run_id") for r, _ in reports if r.get("run_id")])
    history = [report_summary(r, mtime, r.get("run_id") in known) for r, mtime in reports]
    return {
        "reports": len(files),
        "history": history,
        "runs": [_public_run(LANDING_DAG, r) for r in runs],
        "last_run": _public_run(LANDING_DAG, runs[0]) if runs else None,
    }


# ---- streaming ----------------------------------------------------------------------------


def streaming_params(runs: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """The streaming job's topics and group: its latest run's conf over the DAG's defaults."""
    conf = (runs[0].get("conf") or {}) if runs else {}
    return {k: str(conf.get(k) or v) for k, v in STREAMING_DEFAULTS.items()}


def streaming_state(
    paused: bool | None,
    run_state: str | None,
    task_state: str | None,
    progress_age_s: float | None,
    task_age_s: float | None,
) -> tuple[str, str]:
    """(state, why): running, restarting or stopped.

    running: its task runs and the query reported progress lately (idle queries report too);
    restarting: its run is active but the task waits for a retry, is starting, or the query has
    not reported for `STALE_PROGRESS_S`; stopped: paused, or no active run."""
    if paused:
        return "stopped", "the DAG is paused (make stream-start)"
    if run_state not in ("running", "queued"):
        return "stopped", f"no active run (latest: {run_state or 'none'})"
    if task_state == "running":
        if progress_age_s is not None and progress_age_s <= STALE_PROGRESS_S:
            return "running", f"last progress {progress_age_s:.0f} s ago"
        if progress_age_s is None and task_age_s is not None and task_age_s <= STALE_PROGRESS_S:
            return "restarting", "the job started and has not reported progress yet"
        return "restarting", "its task runs but the query has not reported progress for a while"
    return "restarting", f"its task is {task_state or 'not started'}"


def streaming_section(
    kafka: KafkaReader,
    runs: Sequence[Mapping[str, Any]],
    paused: bool | None,
    task: Mapping[str, Any] | None,
    top_words: Sequence[tuple[str, int]],
    now_ms: int,
) -> dict[str, Any]:
    params = streaming_params(runs)
    topics = [t for t in params["input_topics"].split(",") if t]
    group = kafka.group_offsets(params["group_id"], topics)
    latest_meta: dict[str, Any] = {}
    for parts in group.values():
        for g in parts.values():
            ts = g.metadata.get("ts")  # another client of the group may commit other metadata
            if isinstance(ts, (int, float)) and ts > latest_meta.get("ts", -1):
                latest_meta = g.metadata
    progress_age = _age_s(now_ms, latest_meta.get("ts"))
    task_age = _age_s(now_ms, (task or {}).get("start_ms"))
    run = runs[0] if runs else None
    state, why = streaming_state(
        paused, (run or {}).get("state"), (task or {}).get("state"), progress_age, task_age
    )
    return {
        "state": state,
        "why": why,
        "group_id": params["group_id"],
        "input_topics": topics,
        "output_topic": params["output_topic"],
        "batch": latest_meta.get("batch"),
        "input_rows_per_s": latest_meta.get("in_rps"),
        "processed_rows_per_s": latest_meta.get("proc_rps"),
        "batch_duration_ms": latest_meta.get("batch_ms"),
        "batch_rows": latest_meta.get("rows"),
        "since_last_progress_s": progress_age,
        "task_state": (task or {}).get("state"),
        "try_number": (task or {}).get("try_number"),
        "run": _public_run(STREAMING_DAG, run) if run else None,
        "top_words": [{"word": w, "count": c} for w, c in top_words],
    }


class TopWords:
    """The largest running totals of the `wordcounts` topic, read incrementally.

    A word's record carries its new total, and totals only grow, so keeping the `keep` largest
    seen is exact for any top n <= keep: a word dropped from them comes back with its next record.
    Memory stays bounded however many distinct words the topic holds."""

    def __init__(self, keep: int = 200):
        self.keep = keep
        self.counts: dict[str, int] = {}

    def update(self, records: Iterable[tuple[bytes | None, bytes | None]]) -> None:
        for key, value in records:
            if key is None or value is None:
                continue
            try:
                word, count = key.decode("utf-8"), int(value)
            except (UnicodeDecodeError, ValueError):
                continue
            self.counts[word] = count
        if len(self.counts) > 2 * self.keep:
            self.counts = dict(heapq.nlargest(self.keep, self.counts.items(), key=lambda kv: kv[1]))

    def top(self, n: int = 10) -> list[tuple[str, int]]:
        return sorted(self.counts.items(), key=lambda kv: (-kv[1], kv[0]))[:n]


# ---- batch --------------------------------------------------------------------------------


def batch_section(
    fs: FileSystem, cache: JsonCache, runs: Sequence[Mapping[str, Any]], limit: int = 60
) -> list[dict[str, Any]]:
    """The newest curated days, each with its `_SUCCESS` summary and the state of its runs."""
    by_day: dict[str, dict[str, Any]] = {}
    folders = sorted(
        st.name[3:] for st in fs.list(lake.WORDCOUNT_ROOT) if st.is_dir and st.name.startswith("dt=")
    )
    for day in folders[-limit:]:  # one status call per day shown, not per day ever published
        by_day[day] = {"day": day, "published": False}
    for day, row in by_day.items():
        summary_st = fs.status(posixpath.join(lake.wordcount_day(day), lake.SUMMARY_FILE))
        if summary_st is not None:
            s = cache.read(fs, summary_st)
            row.update(
                published=True,
                records=s.get("records"),
                tokens=s.get("tokens"),
                words=s.get("distinct_words", s.get("words")),
                run_id=s.get("run_id"),
                written_at=s.get("written_at"),
            )
    for r in runs:  # newest first: the day's latest run wins
        day = (r.get("data_interval_start") or "")[:10]
        if not day:
            continue
        row = by_day.setdefault(day, {"day": day, "published": False})
        row.setdefault("run_state", r.get("state"))
        row.setdefault("state_run_id", r.get("run_id"))
    days = sorted(by_day.values(), key=lambda d: d["day"], reverse=True)[:limit]
    for d in days:
        d["status"] = _day_status(d)
        d["link"] = run_link(BATCH_DAG, d.get("state_run_id") or d.get("run_id"))
    return days


def _day_status(day: Mapping[str, Any]) -> str:
    state = day.get("run_state")
    if state in ("running", "queued"):
        return "reprocessing" if day["published"] else state
    if day["published"]:
        return "published"
    if state == "success":
        return "missing"  # its run succeeded, but the day's folder or `_SUCCESS` is gone since
    return state or "no _SUCCESS"


def now_ms() -> int:
    return int(time.time() * 1000)
