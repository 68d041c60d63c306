"""Exactly-once landing of Kafka topics into Parquet files, for readers that only list directories.

The protocol (docs/landing.md has the diagrams and the argument) over an abstract `FileSystem`,
so it runs against HDFS in the Spark job (`spark_jobs/kafka_to_hdfs_landing.py` adapts Hadoop's
FileSystem through the JVM), against a local folder in the unit tests (`LocalFileSystem`), and
read-only through WebHDFS in Airflow tasks (`WebHdfsFileSystem`).

Layout of one topic (`streamlab.lake` names the roots; names starting with `_` or `.` are
invisible to readers):

    <raw_root>/<topic>/dt=YYYY-MM-DD/hr=HH/part-<topic>+<partition>+<first>+<last>.parquet
    <raw_root>/<topic>/_landing/log/<seq>.plan.json      what run <seq> will land
    <raw_root>/<topic>/_landing/log/<seq>.outcome.json   "staged" (+ manifest) or "aborted"
    <raw_root>/<topic>/_landing/log/<seq>.commit.json    end offsets landed so far (the commit)
    <raw_root>/<topic>/_landing/staging/<seq>/           files written by run <seq>
    <raw_root>/<topic>/_landing/compact/<key>.<attempt>.json  journal of one compaction attempt
    <raw_root>/<topic>/.snapshot/landed-<seq>/           HDFS snapshot after each commit
    <quarantine_root>/<topic>/dt=.../hr=.../part-...     records that could not be decoded

Every log record is published by "write a temporary file, then rename it to its final name",
and a rename never replaces an existing file: a record is complete when visible, and the first
writer of a name wins. That makes `outcome` the single decision point of a run: whoever
publishes it first (the run itself with "staged", or a later run's recovery with "aborted")
decides whether the staged files will ever become visible.

A run, per topic: (1) recover the pending runs (roll forward if staged, else abort);
(2) plan [last committed end, end offsets now) per partition from that commit (its base), failing
on a retention gap; (3) write the range into staging; (4) inspect the staged files (Parquet
footers) into a manifest with deterministic names; (5) fence and decide (`decide_staged`: any
number of concurrent writers, one decision per range); (6) rename the files into place, skipping
those already moved; (7) publish the commit; (8) delete the staging folder; then compact closed
hours (`compact_topic`, fenced by a token per attempt) and snapshot the topic folder.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import posixpath
import re
import shutil
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Protocol

from streamlab import parquet_footer
from streamlab.lake import HOUR_DIR, TopicPaths, hour_dir

log = logging.getLogger("streamlab.landing")

RAW, QUARANTINE = "raw", "quarantine"
STAGED, ABORTED = "staged", "aborted"
PLAN, OUTCOME, COMMIT = "plan", "outcome", "commit"
HOUR_MS = 3_600_000
LAND_NEW = "land-new"


# ---- errors -------------------------------------------------------------------------------


class LandingError(RuntimeError):
    """A landing run cannot go on; nothing visible was changed by the failing step."""


class DataLossError(LandingError):
    """Kafka deleted records that were never landed (retention), and the loss was not accepted."""

    def __init__(self, topic: str, gaps: Sequence[Gap]):
        self.topic = topic
        self.gaps = list(gaps)
        lines = "\n".join(
            f"  topic {topic!r} partition {g.partition}: offsets [{g.start}, {g.end}) "
            f"({g.end - g.start} records) are gone; the earliest offset Kafka still has is {g.end}"
            for g in self.gaps
        )
        super().__init__(
            f"Kafka no longer holds records of topic {topic!r} that were never landed "
            f"(deleted by retention before this run):\n{lines}\n"
            "Nothing was landed for this topic. To skip the lost records and go on, run again with "
            "--accept-data-loss (DAG param accept_data_loss=true)."
        )


class TopicResetError(LandingError):
    """The topic is not the one landed so far: deleted and re-created (a new topic ID), or a
    partition's log ends below what was landed (truncated, e.g. by an unclean leader election)."""

    def __init__(self, topic: str, what: str):
        self.topic = topic
        super().__init__(
            f"topic {topic!r} is not the topic landed so far: {what}.\n"
            "Nothing was landed for this topic. Records landed before stay where they are. To land the "
            "topic as it is now (from its earliest offsets for a new topic, from the end of its log for "
            "a truncated partition) as a new generation of files (`...+g<n>.parquet`), run again with "
            "--on-topic-reset land-new (DAG param on_topic_reset=land-new)."
        )


class StagingNeeded(LandingError):
    """A run without a staging writer found records to land: nothing was published for the topic
    (raised before its plan), so a run that can stage (the Spark job) takes it over."""


class ConcurrentRunError(LandingError):
    """Another landing run of the same topic published a log record this run wanted to write."""


class ProtocolError(LandingError):
    """The files or the log are not in a state the protocol can produce: needs a human."""


# ---- file systems -------------------------------------------------------------------------


@dataclass(frozen=True)
class FileStatus:
    path: str
    name: str
    is_dir: bool
    length: int = 0
    mtime_ms: int = 0  # modification time (where the file system gives it)


class FileSystem(Protocol):
    """What the protocol needs from a file system. Paths are absolute (`/x/y` or `scheme://...`).

    `create` is exclusive (FileExistsError if the path exists) and makes the parent folders;
    `rename` never replaces an existing destination and never moves into an existing folder: it
    returns False instead, also when the source or the destination's parent is missing (HDFS
    semantics); `replace` atomically renames a file over an existing one (HDFS rename with
    OVERWRITE; FileNotFoundError when the source or the destination's parent is missing);
    `concat` is HDFS's: atomically append the sources (same folder, non-empty) to the target and
    remove them. `status` None, `list` [] and `read`'s FileNotFoundError mean that the path does
    not exist, nothing else: any other error (a NameNode in safe mode, a timeout) is raised.
    """

    can_concat: bool

    def status(self, path: str) -> FileStatus | None: ...
    def list(self, path: str) -> list[FileStatus]: ...  # [] when the folder does not exist
    def mkdirs(self, path: str) -> None: ...
    def read(self, path: str, offset: int = 0, length: int | None = None) -> bytes: ...
    def create(self, path: str, data: bytes) -> None: ...
    def rename(self, src: str, dst: str) -> bool: ...
    def replace(self, src: str, dst: str) -> None: ...
    def delete(self, path: str, recursive: bool = False) -> bool: ...
    def concat(self, target: str, sources: Sequence[str]) -> None: ...


def visible(name: str) -> bool:
    """Hadoop/Spark/pyarrow convention: names starting with `_` or `.` are not data."""
    return not name.startswith(("_", "."))


class LocalFileSystem:
    """A local folder with HDFS semantics (for unit tests and file:// development runs)."""

    can_concat = True

    @staticmethod
    def _p(path: str) -> str:
        return path[len("file://") :] if path.startswith("file://") else path

    def status(self, path: str) -> FileStatus | None:
        p = self._p(path)
        if not os.path.exists(p):
            return None
        is_dir = os.path.isdir(p)
        return FileStatus(
            path,
            posixpath.basename(path.rstrip("/")),
            is_dir,
            0 if is_dir else os.path.getsize(p),
            int(os.path.getmtime(p) * 1000),
        )

    def list(self, path: str) -> list[FileStatus]:
        p = self._p(path)
        if not os.path.isdir(p):
            return []
        out = []
        for name in sorted(os.listdir(p)):
            full = os.path.join(p, name)
            is_dir = os.path.isdir(full)
            size = 0 if is_dir else os.path.getsize(full)
            out.append(
                FileStatus(posixpath.join(path, name), name, is_dir, size, int(os.path.getmtime(full) * 1000))
            )
        return out

    def mkdirs(self, path: str) -> None:
        os.makedirs(self._p(path), exist_ok=True)

    def read(self, path: str, offset: int = 0, length: int | None = None) -> bytes:
        with open(self._p(path), "rb") as f:
            f.seek(offset)
            return f.read() if length is None else f.read(length)

    def create(self, path: str, data: bytes) -> None:
        p = self._p(path)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "xb") as f:
            f.write(data)

    def rename(self, src: str, dst: str) -> bool:
        s, d = self._p(src), self._p(dst)
        if not os.path.exists(s) or os.path.exists(d) or not os.path.isdir(os.path.dirname(d)):
            return False
        os.rename(s, d)
        return True

    def replace(self, src: str, dst: str) -> None:
        d = self._p(dst)
        if os.path.isdir(d):
            raise IsADirectoryError(dst)
        os.replace(self._p(src), d)

    def delete(self, path: str, recursive: bool = False) -> bool:
        p = self._p(path)
        if not os.path.exists(p):
            return False
        if os.path.isdir(p):
            if recursive:
                shutil.rmtree(p)
            else:
                os.rmdir(p)  # OSError when not empty, like HDFS
        else:
            os.remove(p)
        return True

    def concat(self, target: str, sources: Sequence[str]) -> None:
        t = self._p(target)
        srcs = [self._p(s) for s in sources]
        for s in srcs:
            if os.path.dirname(s) != os.path.dirname(t) or not os.path.getsize(s):
                raise OSError(f"concat: {s} is not a non-empty file beside {t}")
        with open(t, "ab") as out:
            for s in srcs:
                with open(s, "rb") as f:
                    shutil.copyfileobj(f, out)
        for s in srcs:
            os.remove(s)


class WebHdfsFileSystem:
    """HDFS through WebHDFS (`hdfs.InsecureClient`, e.g. `WebHDFSHook(...).get_conn()`).

    Used by Airflow tasks (sensors, report readers, the landing's runs with nothing to stage:
    `streamlab.landing_run`) and tests. The same NameNode operations as Hadoop's FileSystem:
    CONCAT and the snapshot operations included.
    """

    can_concat = can_snapshot = True

    def __init__(self, client: Any):
        self.client = client
        self.uri = client.url

    def status(self, path: str) -> FileStatus | None:
        try:
            st = self.client.status(path)
        except Exception as e:
            if _missing(e):  # only "not found" is an answer; any other error is raised
                return None
            raise
        is_dir = st["type"] == "DIRECTORY"
        name = posixpath.basename(path.rstrip("/"))
        return FileStatus(path, name, is_dir, 0 if is_dir else st["length"], st.get("modificationTime", 0))

    def list(self, path: str) -> list[FileStatus]:
        try:
            entries = self.client.list(path, status=True)
        except Exception as e:
            if _missing(e):
                return []
            raise
        return [
            FileStatus(
                posixpath.join(path, n),
                n,
                s["type"] == "DIRECTORY",
                s.get("length", 0),
                s.get("modificationTime", 0),
            )
            for n, s in entries
        ]

    def mkdirs(self, path: str) -> None:
        self.client.makedirs(path)

    def read(self, path: str, offset: int = 0, length: int | None = None) -> bytes:
        try:
            with self.client.read(path, offset=offset, length=length) as r:
                return r.read()
        except Exception as e:
            if _missing(e):
                raise FileNotFoundError(path) from e
            raise

    def create(self, path: str, data: bytes) -> None:
        from hdfs.util import HdfsError

        try:
            self.client.write(path, data=data, overwrite=False)
        except HdfsError as e:
            if "exists" in str(e).lower():
                raise FileExistsError(path) from e
            raise

    def rename(self, src: str, dst: str) -> bool:
        from hdfs.util import HdfsError

        if self.client.status(dst, strict=False) is not None:
            return False
        try:
            self.client.rename(src, dst)
        except HdfsError:
            return False
        return True

    def delete(self, path: str, recursive: bool = False) -> bool:
        return bool(self.client.delete(path, recursive=recursive))

    def concat(self, target: str, sources: Sequence[str]) -> None:
        from hdfs.client import _Request

        # The `hdfs` client has no concat; its own request machinery (retries, user.name) does.
        _Request("POST").to_method("CONCAT")(self.client, target, sources=",".join(sources))

    def allow_snapshot(self, path: str) -> None:
        self.client.allow_snapshot(path)

    def create_snapshot(self, path: str, name: str) -> None:
        self.client.create_snapshot(path, name)

    def delete_snapshot(self, path: str, name: str) -> None:
        self.client.delete_snapshot(path, name)


def _missing(e: Exception) -> bool:
    """A WebHDFS error that says the path does not exist (`hdfs.util.HdfsError` names the
    NameNode's Java exception)."""
    return getattr(e, "exception", None) == "FileNotFoundException"


def walk_files(fs: FileSystem, root: str, include_hidden: bool = False) -> list[FileStatus]:
    """Every file under `root`, depth first; hidden names (and what is under them) skipped
    unless `include_hidden` — exactly what a plain reader of the folder reads."""
    out: list[FileStatus] = []
    for st in fs.list(root):
        if not include_hidden and not visible(st.name):
            continue
        if st.is_dir:
            out.extend(walk_files(fs, st.path, include_hidden))
        else:
            out.append(st)
    return out


# ---- names --------------------------------------------------------------------------------

_FILE_NAME = re.compile(
    r"^part-(?P<topic>.+)\+(?P<p>\d+)\+(?P<first>\d{19})\+(?P<last>\d{19})(?:\+g(?P<gen>\d+))?\.parquet$"
)
_LOG_NAME = re.compile(r"^(\d{12})\.(plan|outcome|commit)\.json$")


def file_name(topic: str, partition: int, first: int, last: int, generation: int = 0) -> str:
    """Deterministic data file name: a record's file is named by its topic-partition and the
    first and last offsets the file holds, so two files can never share a name. Offsets start
    again after a topic reset (`TopicResetError`): files landed after it carry `+g<generation>`."""
    t = topic if len(topic) <= 180 else f"{topic[:160]}~{hashlib.sha1(topic.encode()).hexdigest()[:12]}"
    gen = f"+g{generation}" if generation else ""
    return f"part-{t}+{partition}+{first:019d}+{last:019d}{gen}.parquet"


@dataclass(frozen=True)
class DataFileName:
    partition: int
    first: int
    last: int
    generation: int = 0


def parse_file_name(name: str) -> DataFileName | None:
    m = _FILE_NAME.match(name)
    if not m:
        return None
    return DataFileName(int(m["p"]), int(m["first"]), int(m["last"]), int(m["gen"] or 0))


_EPOCH_HOUR_DIR = re.compile(r"^h=(-?\d+)$")


def destination_hour_dir(staged_dir: str) -> str | None:
    """The `dt=YYYY-MM-DD/hr=HH` folder of a staged folder: either that already, or `h=<hours
    since the epoch>` (what the Spark writer uses: an integer is much cheaper to compute per
    record than two formatted dates). None if it is neither."""
    if HOUR_DIR.match(staged_dir):
        return staged_dir
    m = _EPOCH_HOUR_DIR.match(staged_dir)
    return hour_dir(int(m[1]) * HOUR_MS) if m else None


def hour_start_ms(rel_dir: str) -> int:
    m = HOUR_DIR.match(rel_dir)
    if not m:
        raise ValueError(f"not an hour partition folder: {rel_dir!r}")
    t = datetime.strptime(f"{m[1]} {m[2]}", "%Y-%m-%d %H").replace(tzinfo=timezone.utc)
    return int(t.timestamp() * 1000)


def destination(paths: TopicPaths, entry: Mapping[str, Any]) -> str:
    """Final path of a manifest entry: under the topic's raw or quarantine folder."""
    base = paths.root if entry["kind"] == RAW else paths.quarantine
    return posixpath.join(base, entry["dst"])


# ---- the log ------------------------------------------------------------------------------


def now_ms() -> int:
    return int(time.time() * 1000)


def publish_json(fs: FileSystem, path: str, record: Mapping[str, Any]) -> bool:
    """Atomically create `path` with `record`, unless it exists: True if this call created it."""
    data = json.dumps(record, sort_keys=True, indent=1).encode()
    for _attempt in range(5):
        tmp = posixpath.join(posixpath.dirname(path), f".tmp-{uuid.uuid4().hex}")
        fs.create(tmp, data)
        if fs.rename(tmp, path):
            return True
        if fs.status(path) is not None:
            fs.delete(tmp)
            return False
        # Neither: a concurrent run's clean-up removed the temporary file first. Again.
    raise LandingError(f"could not publish {path}")


def read_json(fs: FileSystem, path: str) -> dict[str, Any]:
    return json.loads(fs.read(path).decode())


@dataclass
class LogState:
    kinds: dict[int, set[str]] = field(default_factory=dict)

    @property
    def last_commit_seq(self) -> int | None:
        seqs = [s for s, k in self.kinds.items() if COMMIT in k]
        return max(seqs) if seqs else None

    @property
    def next_seq(self) -> int:
        return max(self.kinds, default=0) + 1

    def open_seqs(self) -> list[int]:
        """Planned runs after the last commit that are not committed (aborted ones included)."""
        last = self.last_commit_seq or 0
        return sorted(s for s, k in self.kinds.items() if s > last and PLAN in k and COMMIT not in k)


def read_log(fs: FileSystem, paths: TopicPaths) -> LogState:
    state = LogState()
    for st in fs.list(paths.log_dir):
        m = _LOG_NAME.match(st.name)
        if m:
            state.kinds.setdefault(int(m[1]), set()).add(m[2])
    return state


def plan_base(plan: Mapping[str, Any], state: LogState) -> int:
    """The commit a plan starts from (0: none). Plans of older versions did not record it: the
    highest commit below them."""
    if "base" in plan:
        return int(plan["base"])
    return max((s for s, k in state.kinds.items() if COMMIT in k and s < plan["seq"]), default=0)


def latest_commit(fs: FileSystem, paths: TopicPaths) -> dict[str, Any] | None:
    seq = read_log(fs, paths).last_commit_seq
    return None if seq is None else read_json(fs, paths.record(seq, COMMIT))


def _int_keys(d: Mapping[str, Any]) -> dict[int, Any]:
    return {int(k): v for k, v in d.items()}


def _str_keys(d: Mapping[int, Any]) -> dict[str, Any]:
    return {str(k): v for k, v in sorted(d.items())}


# ---- planning (pure) ----------------------------------------------------------------------


@dataclass(frozen=True)
class Gap:
    partition: int
    start: int
    end: int


@dataclass(frozen=True)
class RangePlan:
    start: dict[int, int]
    end: dict[int, int]
    gaps: list[Gap]

    @property
    def empty(self) -> bool:
        return all(self.end[p] == self.start[p] for p in self.end)

    @property
    def offsets(self) -> int:
        return sum(self.end[p] - self.start[p] for p in self.end)


def plan_ranges(
    topic: str,
    committed: Mapping[int, int] | None,
    available: Mapping[int, tuple[int, int]],
    accept_data_loss: bool = False,
    land_new: bool = False,
) -> RangePlan:
    """Per partition, the range to land: [last committed end, latest offset now).

    `available` maps partition -> (earliest offset Kafka still has, latest offset). A partition
    never landed starts at 0. If Kafka's earliest offset is past where landing stopped, the
    records in between are gone: DataLossError names them, unless `accept_data_loss`, in which
    case the range starts at the earliest offset and the gap is recorded.
    """
    committed = dict(committed or {})
    missing = sorted(set(committed) - set(available))
    if missing:
        raise TopicResetError(topic, f"partitions {missing} were landed before and no longer exist")
    start, end, gaps = {}, {}, []
    for p, (earliest, latest) in sorted(available.items()):
        expected = committed.get(p, 0)
        if latest < expected:
            if not land_new:
                raise TopicResetError(
                    topic,
                    f"partition {p} ends at offset {latest}, below the {expected} already landed (its log "
                    "was truncated: an unclean leader election, or the topic re-created)",
                )
            expected = max(earliest, latest)  # the offsets from here on are new records
        if earliest > expected:
            gaps.append(Gap(p, expected, earliest))
            expected = earliest
        start[p], end[p] = expected, latest
    if gaps and not accept_data_loss:
        raise DataLossError(topic, gaps)
    return RangePlan(start, end, gaps)


def records_per_file(
    bytes_per_record: float | None, target_file_bytes: int, max_records_per_file: int
) -> int:
    """Split size in records: the byte target divided by the size per record seen last time."""
    per_record = bytes_per_record if bytes_per_record and bytes_per_record > 0 else 64.0
    return max(1000, min(max_records_per_file, int(target_file_bytes / per_record)))


# ---- interfaces of the run ----------------------------------------------------------------


class OffsetSource(Protocol):
    def available(self, topic: str) -> dict[int, tuple[int, int]]:
        """partition -> (earliest offset, latest offset) of the topic, now."""
        ...

    def topic_id(self, topic: str) -> str | None:
        """Kafka's topic ID (a new one when the topic is deleted and created again)."""
        ...


@dataclass(frozen=True)
class WriteResult:
    records: int  # rows read from Kafka
    quarantined: int  # of which written under quarantine/
    # offsets Kafka deleted between the plan and the read ({partition, start, end}; only with
    # accept_data_loss: otherwise the read fails)
    read_gaps: list[dict[str, int]] = field(default_factory=list)
    first_record_ms: int | None = None  # when the first record was fetched (the job's own clock)


class StagingWriter(Protocol):
    def write(self, plan: Mapping[str, Any], staging_dir: str, records_per_file: int) -> WriteResult:
        """Read plan['start']..plan['end'] of plan['topic'] and write Parquet files under
        `<staging_dir>/raw/<hour>/` and `<staging_dir>/quarantine/<hour>/`, where <hour> is
        `dt=YYYY-MM-DD/hr=HH` or `h=<hours since the epoch>` (UTC, of the record timestamp),
        each file holding records of ONE Kafka partition."""
        ...


@dataclass(frozen=True)
class FileInfo:
    records: int
    partition: int
    first: int
    last: int
    min_ts_ms: int | None = None
    max_ts_ms: int | None = None


def parquet_file_info(fs: FileSystem, path: str, length: int) -> FileInfo:
    """Records, Kafka partition and offset range of a landed Parquet file, from its footer."""
    raw = parquet_footer.footer_bytes(lambda o, n: fs.read(path, o, n), length)
    meta = parquet_footer.decode_struct(raw)
    ranges = parquet_footer.int_column_ranges(meta)
    part, off = ranges.get("partition"), ranges.get("offset")
    if part is None or off is None or None in (part.min, part.max, off.min, off.max):
        raise ProtocolError(f"{path}: no statistics for columns partition/offset")
    if part.min != part.max:
        raise ProtocolError(f"{path}: holds records of several Kafka partitions")
    ts = ranges.get("timestamp")
    to_ms = (lambda v: None if v is None else v // 1000) if ts else (lambda v: None)
    return FileInfo(
        records=parquet_footer.num_rows(meta),
        partition=part.min,
        first=off.min,
        last=off.max,
        min_ts_ms=to_ms(ts.min) if ts else None,
        max_ts_ms=to_ms(ts.max) if ts else None,
    )


@dataclass
class LandingOptions:
    accept_data_loss: bool = False
    target_file_bytes: int = 128 * 1024 * 1024
    max_records_per_file: int = 5_000_000
    keep_log_runs: int = 50
    compact: bool = True
    small_file_bytes: int = 32 * 1024 * 1024
    compact_target_bytes: int = 128 * 1024 * 1024
    close_after_ms: int = 10 * 60 * 1000  # an hour is closed this long after its end is landed
    compact_lookback_hours: int = 48
    keep_snapshots: int = 12  # one per commit: two hours of the 10-minute schedule
    on_topic_reset: str = "fail"  # or LAND_NEW: see TopicResetError


# ---- staging -> manifest ------------------------------------------------------------------


def build_manifest(
    fs: FileSystem,
    topic: str,
    staging_dir: str,
    plan: Mapping[str, Any],
    written: WriteResult,
    inspect: Callable[[FileSystem, str, int], FileInfo] = parquet_file_info,
) -> list[dict[str, Any]]:
    """The staged files with their deterministic destinations, checked against the plan."""
    start, end = _int_keys(plan["start"]), _int_keys(plan["end"])
    generation = plan.get("generation", 0)
    files: list[dict[str, Any]] = []
    for kind in (RAW, QUARANTINE):
        base = posixpath.join(staging_dir, kind)
        for st in walk_files(fs, base):
            rel = st.path[len(base) + 1 :]
            rel_dir = destination_hour_dir(posixpath.dirname(rel))
            if rel_dir is None:
                raise ProtocolError(f"staged file outside an hour folder: {st.path}")
            info = inspect(fs, st.path, st.length)
            if info.records == 0:
                continue  # an empty file adds nothing; it stays in staging and is deleted
            p = info.partition
            if p not in end or not start[p] <= info.first <= info.last < end[p]:
                raise ProtocolError(
                    f"{st.path}: partition {p} offsets {info.first}..{info.last} are outside the "
                    f"planned range {start.get(p)}..{end.get(p)}"
                )
            files.append(
                {
                    "kind": kind,
                    "src": posixpath.join(kind, rel),
                    "dst": posixpath.join(rel_dir, file_name(topic, p, info.first, info.last, generation)),
                    "partition": p,
                    "first": info.first,
                    "last": info.last,
                    "records": info.records,
                    "bytes": st.length,
                    "min_ts_ms": info.min_ts_ms,
                    "max_ts_ms": info.max_ts_ms,
                    # the writer tags files of records whose timestamp names no hour
                    "bad_timestamps": kind == QUARANTINE and "-ts-" in st.name,
                }
            )
    for p in end:
        n = sum(f["records"] for f in files if f["partition"] == p)
        if n > end[p] - start[p]:
            raise ProtocolError(f"partition {p}: {n} records staged for {end[p] - start[p]} offsets")
    by_kind = {k: sum(f["records"] for f in files if f["kind"] == k) for k in (RAW, QUARANTINE)}
    if by_kind[RAW] + by_kind[QUARANTINE] != written.records or by_kind[QUARANTINE] != written.quarantined:
        raise ProtocolError(
            f"staged files hold {by_kind} records but the writer read {written.records} "
            f"({written.quarantined} quarantined)"
        )
    names = [(f["kind"], f["dst"]) for f in files]
    if len(set(names)) != len(names):
        raise ProtocolError("two staged files got the same name (overlapping offsets)")
    return sorted(files, key=lambda f: (f["kind"], f["partition"], f["first"]))


# ---- roll forward, commit, recover --------------------------------------------------------


def roll_forward(fs: FileSystem, paths: TopicPaths, seq: int, files: Sequence[Mapping[str, Any]]) -> int:
    """Rename every staged file to its destination; files already moved are skipped.

    Each rename is atomic and never replaces a file, so at any instant a record is either in
    staging (invisible) or at its one destination (visible): never both, never partial.
    """
    staging = paths.staging(seq)
    made: set[str] = set()
    moved = 0
    for f in files:
        dst = destination(paths, f)
        parent = posixpath.dirname(dst)
        if parent not in made:
            fs.mkdirs(parent)
            made.add(parent)
        src = posixpath.join(staging, f["src"])
        if fs.rename(src, dst):
            moved += 1
            continue
        s, d = fs.status(src), fs.status(dst)
        if s is None and d is not None and d.length == f["bytes"]:
            continue  # moved by an earlier, interrupted attempt
        if s is None and fs.status(paths.record(seq, COMMIT)) is not None:
            return moved  # another writer finished this roll-forward (a later compaction may have merged its files)
        raise ProtocolError(
            f"run {seq}: cannot move {src} -> {dst} (source {'present' if s else 'missing'}, "
            f"destination {f'present, {d.length} bytes' if d else 'missing'}, expected {f['bytes']} bytes)"
        )
    return moved


def partition_stats(
    plan: Mapping[str, Any], files: Sequence[Mapping[str, Any]], read_gaps: Sequence[Mapping[str, int]] = ()
) -> dict[str, dict[str, Any]]:
    start, end = _int_keys(plan["start"]), _int_keys(plan["end"])
    gaps = {g["partition"]: g for g in plan.get("gaps", [])}
    out = {}
    for p in sorted(end):
        mine = [f for f in files if f["partition"] == p]
        raw = [f for f in mine if f["kind"] == RAW]
        bad = [f for f in mine if f["kind"] == QUARANTINE]
        ts = [f["max_ts_ms"] for f in mine if f.get("max_ts_ms") is not None]
        out[str(p)] = {
            "start": start[p],
            "end": end[p],
            "offsets": end[p] - start[p],
            "records": sum(f["records"] for f in raw),
            "bytes": sum(f["bytes"] for f in raw),
            "files": len(raw),
            "quarantined": sum(f["records"] for f in bad),
            "quarantine_files": len(bad),
            "bad_timestamps": sum(f["records"] for f in bad if f.get("bad_timestamps")),
            "max_timestamp_ms": max(ts) if ts else None,
            "gap": [gaps[p]["start"], gaps[p]["end"]] if p in gaps else None,
            "read_gaps": [[g["start"], g["end"]] for g in read_gaps if g["partition"] == p],
        }
    return out


def make_commit(
    plan: Mapping[str, Any], outcome: Mapping[str, Any] | None, committed_at: int
) -> dict[str, Any]:
    """The commit record of a run: a pure function of its plan and outcome, so a recovering run
    writes exactly what the crashed one would have."""
    files = outcome["files"] if outcome else []
    stats = partition_stats(plan, files, (outcome or {}).get("read_gaps", []))
    raw_records = sum(s["records"] for s in stats.values())
    raw_bytes = sum(s["bytes"] for s in stats.values())
    return {
        "seq": plan["seq"],
        "topic": plan["topic"],
        "run_id": plan["run_id"],
        "start": plan["start"],
        "end": plan["end"],
        "gaps": plan.get("gaps", []),
        "planned_at_ms": plan["planned_at_ms"],
        "committed_at_ms": committed_at,
        "noop": not files and plan.get("noop", False),
        "topic_id": plan.get("topic_id"),
        "generation": plan.get("generation", 0),
        "reset": plan.get("reset"),
        "partitions": stats,
        "hours": sorted({posixpath.dirname(f["dst"]) for f in files if f["kind"] == RAW}),
        "bytes_per_record": (raw_bytes / raw_records) if raw_records else plan.get("bytes_per_record"),
    }


def _publish_commit(fs: FileSystem, paths: TopicPaths, plan: Mapping[str, Any], outcome) -> dict[str, Any]:
    seq = plan["seq"]
    record = make_commit(plan, outcome, now_ms())
    if not publish_json(fs, paths.record(seq, COMMIT), record):
        existing = read_json(fs, paths.record(seq, COMMIT))
        if existing["end"] != record["end"]:
            raise ProtocolError(f"run {seq}: a different commit record exists")
        return existing
    return record


def _decide(fs: FileSystem, paths: TopicPaths, seq: int, outcome: Mapping[str, Any]) -> dict[str, Any]:
    """Publish the outcome of run `seq` unless one exists; return the outcome that holds."""
    publish_json(fs, paths.record(seq, OUTCOME), outcome)
    return read_json(fs, paths.record(seq, OUTCOME))


def _abort(fs: FileSystem, paths: TopicPaths, seq: int, reason: str) -> dict[str, Any]:
    aborted = {"seq": seq, "state": ABORTED, "reason": reason, "decided_at_ms": now_ms(), "files": []}
    return _decide(fs, paths, seq, aborted)


def decide_staged(
    fs: FileSystem,
    paths: TopicPaths,
    plan: Mapping[str, Any],
    files: Sequence[Mapping[str, Any]],
    read_gaps: Sequence[Mapping[str, int]] = (),
) -> dict[str, Any]:
    """The fence, then the decision of run N (docs/landing.md, "Fencing").

    1. Every run between N's base commit and N gets an outcome: `aborted` is published for each
       one that has none (the same exclusive name its own decision would take, so whichever comes
       first holds). One found `staged` means another writer's decision took effect after N
       planned: N aborts itself.
    2. N publishes `staged`; a concurrent fence may have aborted N first.
    3. The last commit must still be N's base (or N's own commit, written by a concurrent roll
       forward). Otherwise the decision is void: N's base is old enough that the log was trimmed
       under it (a writer paused across many runs), so names the fence relied on were free again.
       A void decision is below the last commit, where no run ever rolls forward.
    """
    seq, base = plan["seq"], plan["base"]
    topic = paths.topic
    for other in range(base + 1, seq):
        outcome = _abort(fs, paths, other, f"fenced by run {seq}")
        if outcome["state"] == STAGED:
            _abort(fs, paths, seq, f"run {other} decided after run {seq} planned")
            raise ConcurrentRunError(
                f"topic {topic!r}: run {other} of another writer decided after run {seq} planned; "
                f"run {seq} is aborted and its staged files are discarded (nothing was made visible)"
            )
    staged = {"seq": seq, "state": STAGED, "base": base, "decided_at_ms": now_ms(), "files": list(files),
              "read_gaps": list(read_gaps)}  # fmt: skip
    outcome = _decide(fs, paths, seq, staged)
    if outcome["state"] != STAGED:
        raise ConcurrentRunError(
            f"topic {topic!r}: run {seq} was aborted by another run ({outcome.get('reason')}); "
            "its staged files are discarded (nothing was made visible)"
        )
    last = read_log(fs, paths).last_commit_seq or 0
    if last not in (base, seq):
        raise ConcurrentRunError(
            f"topic {topic!r}: run {seq} planned from commit {base}, but commit {last} exists: the run "
            "was paused while others landed; its decision is void and nothing was made visible"
        )
    return outcome


def recover(fs: FileSystem, paths: TopicPaths) -> list[str]:
    """Finish or abort the runs that did not commit; clean what failed runs left. Idempotent, and
    safe beside a live run: a run still writing is aborted (it fails when it tries to decide)."""
    notes: list[str] = []
    state = read_log(fs, paths)
    for seq in state.open_seqs():
        plan = read_json(fs, paths.record(seq, PLAN))
        had_outcome = OUTCOME in state.kinds[seq]
        outcome = _abort(fs, paths, seq, "recovered: the run had not decided")
        if outcome["state"] == ABORTED:
            if not had_outcome:
                notes.append(f"run {seq} aborted (it had not decided; its staged files are discarded)")
            continue
        last = read_log(fs, paths).last_commit_seq or 0
        if last == seq:
            continue  # its own writer committed meanwhile
        if plan_base(plan, state) != last:
            raise ProtocolError(
                f"run {seq} is staged from commit {plan_base(plan, state)}, but commit {last} is the last"
            )
        moved = roll_forward(fs, paths, seq, outcome["files"])
        _publish_commit(fs, paths, plan, outcome)
        notes.append(f"run {seq} rolled forward ({moved} of {len(outcome['files'])} files moved now)")
    # Staging folders of decided runs (never one a concurrent run may still be writing: a run
    # decides only after every run below it is decided), and temporary files of publications.
    state = read_log(fs, paths)
    decided = [s for s, k in state.kinds.items() if k & {OUTCOME, COMMIT}]
    last_decided = max(decided, default=0)
    for st in fs.list(posixpath.join(paths.landing, "staging")):
        if st.name.isdigit() and int(st.name) <= last_decided:
            fs.delete(st.path, recursive=True)
    for st in fs.list(paths.log_dir):
        if st.name.startswith(".tmp-"):
            fs.delete(st.path)
    return notes


def trim_log(fs: FileSystem, paths: TopicPaths, keep: int) -> int:
    state = read_log(fs, paths)
    last = state.last_commit_seq
    if last is None:
        return 0
    removed = 0
    for seq in sorted(state.kinds):
        if seq >= last - keep:
            break
        for kind in state.kinds[seq]:
            fs.delete(paths.record(seq, kind))
            removed += 1
    return removed


# ---- one run of one topic -----------------------------------------------------------------


def land_topic(
    fs: FileSystem,
    paths: TopicPaths,
    source: OffsetSource,
    writer: StagingWriter | None,
    options: LandingOptions | None = None,
    run_id: str = "manual",
    value_format: str = "text",
    inspect: Callable[[FileSystem, str, int], FileInfo] = parquet_file_info,
) -> dict[str, Any]:
    """Land [last committed end, latest now) of one topic. Returns the topic's report.

    `writer` None: only a run with nothing to stage is done (StagingNeeded otherwise, before
    anything is published)."""
    opts = options or LandingOptions()
    topic = paths.topic
    started, started_ms = time.monotonic(), now_ms()
    phases = _Phases()
    notes = recover(fs, paths)
    phases.mark("recover")

    state = read_log(fs, paths)
    last = (
        None if state.last_commit_seq is None else read_json(fs, paths.record(state.last_commit_seq, COMMIT))
    )
    committed = _int_keys(last["end"]) if last else None
    planned_at = now_ms()
    topic_id = source.topic_id(topic)
    available = source.available(topic)
    land_new = opts.on_topic_reset == LAND_NEW
    generation = (last or {}).get("generation", 0)
    reset = None
    if last and last.get("topic_id") and topic_id and last["topic_id"] != topic_id:
        what = (
            f"its topic ID is {topic_id}, the records landed so far came from topic ID "
            f"{last['topic_id']} (deleted and created again)"
        )
        if not land_new:
            raise TopicResetError(topic, what)
        committed, reset = None, what  # a new topic: land it from its earliest offsets
    truncated = {p: e for p, e in (committed or {}).items() if p in available and available[p][1] < e}
    if truncated and land_new:
        reset = f"partitions {sorted(truncated)} were truncated below the landed ends {truncated}"
    ranges = plan_ranges(topic, committed, available, opts.accept_data_loss, land_new)
    if reset:
        generation += 1
        notes.append(f"topic reset: {reset}; landing generation {generation} from {ranges.start}")
    latest = {p: available[p][1] for p in available}
    seq = state.next_seq
    plan = {
        "seq": seq,
        "base": state.last_commit_seq or 0,
        "topic": topic,
        "run_id": run_id,
        "value_format": value_format,
        "planned_at_ms": planned_at,
        "start": _str_keys(ranges.start),
        "end": _str_keys(ranges.end),
        "committed_before": _str_keys(committed or {}),
        "gaps": [{"partition": g.partition, "start": g.start, "end": g.end} for g in ranges.gaps],
        "accept_data_loss": opts.accept_data_loss,
        "bytes_per_record": last.get("bytes_per_record") if last else None,
        "noop": ranges.empty,
        "topic_id": topic_id,
        "generation": generation,
        "reset": reset,
    }
    if writer is None and not ranges.empty:
        raise StagingNeeded(f"topic {topic!r}: {ranges.offsets} offsets to land")
    fs.mkdirs(paths.log_dir)
    # A no-op run goes through plan and decision like any run: its commit moves "landed through",
    # so it must be fenced like one (a no-op committing N beside a live run N would hide that
    # run's files from every later run).
    if not publish_json(fs, paths.record(seq, PLAN), plan):
        raise ConcurrentRunError(f"topic {topic!r}: run {seq} was planned by another run")
    phases.mark("plan")
    first_record_ms = None
    if ranges.empty:
        outcome = decide_staged(fs, paths, plan, [])
        commit, status = _publish_commit(fs, paths, plan, outcome), "noop"
    else:
        staging = paths.staging(seq)
        rpf = records_per_file(plan["bytes_per_record"], opts.target_file_bytes, opts.max_records_per_file)
        try:
            written = writer.write(plan, staging, rpf)
            first_record_ms = written.first_record_ms
            phases.mark("write")
            files = build_manifest(fs, topic, staging, plan, written, inspect)
            phases.mark("manifest")
        except Exception as e:  # aborted meanwhile, its staging deleted: say that, not the symptom
            if fs.status(paths.record(seq, OUTCOME)) is not None:
                raise ConcurrentRunError(
                    f"topic {topic!r}: run {seq} was aborted by another run while it wrote; its staged "
                    "files are discarded (nothing was made visible)"
                ) from e
            raise
        outcome = decide_staged(fs, paths, plan, files, written.read_gaps)
        roll_forward(fs, paths, seq, files)
        commit = _publish_commit(fs, paths, plan, outcome)
        fs.delete(staging, recursive=True)
        status = "landed"
    committed_ms = now_ms()
    trim_log(fs, paths, opts.keep_log_runs)
    phases.mark("commit")

    compaction = None
    if opts.compact:
        compaction = compact_topic(
            fs, paths, commit["planned_at_ms"], opts, extra_hours=commit.get("hours", [])
        )
        phases.mark("compact")
    snapshot = None
    if opts.keep_snapshots and getattr(fs, "can_snapshot", False):
        snapshot = take_snapshot(fs, paths, commit["seq"], opts.keep_snapshots)
        phases.mark("snapshot")
    try:
        after = source.available(topic)
    except Exception as e:  # the landing itself succeeded; lag after is informative only
        log.warning("lag after: %s", e)
        after = {}
    report = topic_report(topic, status, commit, latest, after, notes, compaction, time.monotonic() - started)
    report["snapshot"] = snapshot
    report["timings_s"] = phases.seconds
    # first record fetched -> commit published: the run's data time, without any start-up
    report["first_record_ms"], report["committed_ms"] = first_record_ms, committed_ms
    report["started_ms"], report["finished_ms"] = started_ms, now_ms()  # topics may overlap in a run
    return report


class _Phases:
    """Seconds spent in each phase of a run (for the report and the benchmark)."""

    def __init__(self):
        self.t = time.monotonic()
        self.seconds: dict[str, float] = {}

    def mark(self, name: str) -> None:
        now = time.monotonic()
        self.seconds[name] = round(now - self.t, 3)
        self.t = now


def topic_report(
    topic: str,
    status: str,
    commit: Mapping[str, Any],
    latest_before: Mapping[int, int],
    available_after: Mapping[int, tuple[int, int]],
    notes: Sequence[str],
    compaction: Mapping[str, Any] | None,
    seconds: float,
) -> dict[str, Any]:
    parts = []
    before = _int_keys(commit["start"])
    for key, s in commit["partitions"].items():
        p = int(key)
        committed_before = before[p] if s["gap"] is None else s["gap"][0]
        parts.append(
            {
                "partition": p,
                "offset_range": [s["start"], s["end"]],
                "records": s["records"],
                "bytes": s["bytes"],
                "files": s["files"],
                "quarantined": s["quarantined"],
                "bad_timestamps": s.get("bad_timestamps", 0),
                "lag_before": latest_before.get(p, s["end"]) - committed_before,
                "lag_after": (available_after[p][1] - s["end"]) if p in available_after else None,
                "gap": s["gap"],
                "read_gaps": s.get("read_gaps", []),
            }
        )
    totals = {
        k: sum(x[k] for x in parts) for k in ("records", "bytes", "files", "quarantined", "bad_timestamps")
    }
    return {
        "topic": topic,
        "status": status,
        "seq": commit["seq"],
        "planned_at_ms": commit["planned_at_ms"],
        "partitions": parts,
        "totals": totals,
        "recovered": list(notes),
        "compaction": compaction,
        "seconds": round(seconds, 3),
    }


def format_report(report: Mapping[str, Any]) -> str:
    """Human-readable table of a run report (the task log)."""
    lines = [f"landing run {report.get('run_id')}: {report.get('status')}"]
    for t in report.get("topics", []):
        if t.get("status") == "error":
            lines.append(f"  {t['topic']}: ERROR {t['error']}")
            continue
        lines.append(f"  {t['topic']}: {t['status']} (run {t['seq']}, {t['seconds']} s) {t['totals']}")
        lines.append(
            "    partition  offset range              records        bytes  files  quarantined  lag before/after"
        )
        for p in t["partitions"]:
            rng = f"[{p['offset_range'][0]}, {p['offset_range'][1]})"
            lines.append(
                f"    {p['partition']:>9}  {rng:<24} {p['records']:>8} {p['bytes']:>12} {p['files']:>6} "
                f"{p['quarantined']:>12}  {p['lag_before']}/{p['lag_after']}"
                + (f"  GAP skipped {p['gap']}" if p["gap"] else "")
                + (f"  deleted while read {p['read_gaps']}" if p.get("read_gaps") else "")
                + (
                    f"  ({p['bad_timestamps']} quarantined for their timestamp)"
                    if p.get("bad_timestamps")
                    else ""
                )
            )
        for note in t.get("recovered", []):
            lines.append(f"    recovered: {note}")
        if t.get("compaction"):
            lines.append(f"    compaction: {t['compaction']}")
        if t.get("snapshot"):
            snap = t["snapshot"]
            lines.append(f"    snapshot: {snap.get('path') or 'FAILED ' + snap['error']}")
    return "\n".join(lines)


# ---- compaction ---------------------------------------------------------------------------
#
# Merge the small files of one Kafka partition in a closed hour folder into one file, with no
# instant at which a reader sees a record twice or misses one:
#   1. write the merged footer as a hidden file `_compact-<p>-<first>-<attempt>.footer` beside them;
#   2. journal  _landing/compact/<key>.<attempt>.json (key: hour folder + partition): target,
#      sources, lengths, expected result; then settle every other journal of the same key;
#   3. check the lengths again, then concat(target=F1, sources=[F2..Fn, footer]): one atomic
#      namespace operation; F1 now holds all the rows, F2..Fn are gone;
#   4. rename F1 to the name of the merged offset range (same rows, new name: atomic);
#   5. delete the journal.
# The footer file is the attempt's token: concat fails atomically when one of its sources is
# missing, so deleting an attempt's footer revokes it whether it is dead or only paused, and
# finding the footer gone means the concat happened or was revoked (the target's length says
# which). Settling never waits for or trusts a possibly live attempt.


def _journal_key(directory: str, partition: str) -> str:
    return hashlib.sha1(f"{directory}\0{partition}".encode()).hexdigest()[:20]


def settle_compaction(fs: FileSystem, journal_path: str) -> str | None:
    """Revoke or finish the compaction attempt of one journal, then delete the journal."""
    try:
        j = read_json(fs, journal_path)
    except FileNotFoundError:
        return None  # settled by someone else meanwhile
    d = j["dir"]
    note = None
    if fs.delete(posixpath.join(d, j["footer"])):
        note = f"compaction of {j['target']} revoked (its concat can no longer happen)"
    else:
        target = fs.status(posixpath.join(d, j["target"]))
        if target is not None and target.length == j["expected_length"] and j["target"] != j["final"]:
            if fs.rename(target.path, posixpath.join(d, j["final"])):
                note = f"compaction of {j['target']} finished"
            else:
                final = fs.status(posixpath.join(d, j["final"]))
                if final is None or final.length != j["expected_length"]:
                    raise ProtocolError(
                        f"compaction {journal_path}: cannot rename {target.path} to {j['final']}"
                    )
        # otherwise: concat done and renamed, or revoked before it: nothing left to do
    fs.delete(journal_path)
    return note


def recover_compaction(fs: FileSystem, paths: TopicPaths) -> list[str]:
    notes = []
    for st in fs.list(paths.compact_dir):
        if st.name.startswith(".tmp-"):
            fs.delete(st.path)
        elif st.name.endswith(".json"):
            note = settle_compaction(fs, st.path)
            if note:
                notes.append(note)
    return notes


def _hour_dirs(
    fs: FileSystem, paths: TopicPaths, watermark_ms: int, opts: LandingOptions, extra: Iterable[str]
):
    oldest = watermark_ms - opts.compact_lookback_hours * HOUR_MS
    out = set(extra)
    for dt in fs.list(paths.root):
        if not dt.is_dir or not dt.name.startswith("dt="):
            continue
        try:
            day_ms = hour_start_ms(f"{dt.name}/hr=00")
        except ValueError:
            continue
        if day_ms + 24 * HOUR_MS < oldest or day_ms > watermark_ms:
            continue
        for hr in fs.list(dt.path):
            if hr.is_dir and hr.name.startswith("hr="):
                out.add(f"{dt.name}/{hr.name}")
    closed = []
    for rel in sorted(out):
        try:
            start = hour_start_ms(rel)
        except ValueError:
            continue
        if start + HOUR_MS + opts.close_after_ms <= watermark_ms:
            closed.append(rel)
    return closed


def plan_compaction(files: Sequence[FileStatus], small: int, target: int) -> list[list[FileStatus]]:
    """Groups of >= 2 small files of one partition, consecutive by offset, up to `target` bytes."""
    by_part: dict[tuple[int, int], list[tuple[DataFileName, FileStatus]]] = {}
    for st in files:  # offsets are unique per partition within one generation only
        n = parse_file_name(st.name)
        if n is not None and not st.is_dir:
            by_part.setdefault((n.partition, n.generation), []).append((n, st))
    groups = []
    for p in sorted(by_part):
        current: list[FileStatus] = []
        size = 0
        for _name, st in sorted(by_part[p], key=lambda x: x[0].first):
            if st.length >= small or size + st.length > target:
                if len(current) >= 2:
                    groups.append(current)
                current, size = [], 0
                if st.length >= small:
                    continue
            current.append(st)
            size += st.length
        if len(current) >= 2:
            groups.append(current)
    return groups


def _changed(fs: FileSystem, group: Sequence[FileStatus]) -> bool:
    for st in group:
        now = fs.status(st.path)
        if now is None or now.length != st.length:
            return True
    return False


def merge_files(
    fs: FileSystem, paths: TopicPaths, directory: str, group: Sequence[FileStatus]
) -> dict[str, Any] | None:
    """Merge one group (see the comment above); None if skipped (or revoked by another run)."""
    names = [parse_file_name(st.name) for st in group]
    try:
        raws = [
            parquet_footer.footer_bytes(lambda o, n, p=st.path: fs.read(p, o, n), st.length) for st in group
        ]
    except Exception:
        if _changed(fs, group):  # merged away by a concurrent compaction since the listing
            return None
        raise
    try:
        footer = parquet_footer.merged_footer([(raw, st.length) for raw, st in zip(raws, group, strict=True)])
    except parquet_footer.ParquetFooterError as e:
        log.warning("not merging %s: %s", [st.name for st in group], e)
        return None
    records = sum(parquet_footer.num_rows(parquet_footer.decode_struct(r)) for r in raws)
    partition = names[0].partition
    first, last = names[0].first, max(n.last for n in names)
    final = file_name(paths.topic, partition, first, last, names[0].generation)
    attempt = uuid.uuid4().hex[:12]
    footer_name = f"_compact-{partition}-{first:019d}-{attempt}.footer"
    target = group[0]
    key = _journal_key(directory, f"{partition}g{names[0].generation}")
    journal = {
        "dir": directory,
        "target": target.name,
        "sources": [st.name for st in group[1:]],
        "footer": footer_name,
        "lengths": {st.name: st.length for st in group},
        "expected_length": sum(st.length for st in group) + len(footer),
        "final": final,
        "records": records,
    }
    fpath = posixpath.join(directory, footer_name)
    jname = f"{key}.{attempt}.json"
    jpath = posixpath.join(paths.compact_dir, jname)
    fs.create(fpath, footer)  # before the journal: a journal always names an existing token
    fs.mkdirs(paths.compact_dir)
    publish_json(fs, jpath, journal)
    for st in fs.list(paths.compact_dir):  # another attempt on these files: revoke or finish it
        if st.name.startswith(f"{key}.") and st.name != jname and st.name.endswith(".json"):
            settle_compaction(fs, st.path)

    def give_up(why: str) -> None:
        fs.delete(fpath)
        fs.delete(jpath)
        log.info("compaction of %s skipped: %s", target.path, why)

    if _changed(fs, group):  # nobody may have changed the files since their footers were read
        give_up("a file changed meanwhile")
        return None
    try:
        fs.concat(target.path, [st.path for st in group[1:]] + [fpath])
    except Exception:
        merged = fs.status(target.path)
        if merged is not None and merged.length == journal["expected_length"]:
            pass  # the concat happened; only its answer was lost
        elif fs.status(fpath) is None:  # revoked by another run: the concat did not happen
            fs.delete(jpath)
            return None
        else:
            raise
    if not fs.rename(target.path, posixpath.join(directory, final)):
        done = fs.status(posixpath.join(directory, final))  # finished by another run's settling
        if done is None or done.length != journal["expected_length"]:
            raise ProtocolError(f"cannot rename {target.path} to {final}")
    fs.delete(jpath)
    return {"files": len(group), "records": records, "bytes": journal["expected_length"], "name": final}


def compact_topic(
    fs: FileSystem,
    paths: TopicPaths,
    watermark_ms: int,
    options: LandingOptions | None = None,
    extra_hours: Iterable[str] = (),
) -> dict[str, Any]:
    """Merge small files in the closed hours of a topic (hours whose end, plus
    `close_after_ms`, is before the landing watermark)."""
    opts = options or LandingOptions()
    if not fs.can_concat:
        return {"skipped": "the file system has no atomic concat"}
    notes = recover_compaction(fs, paths)
    report = {"hours": 0, "merged_groups": 0, "files_before": 0, "files_after": 0, "recovered": notes}
    for rel in _hour_dirs(fs, paths, watermark_ms, opts, extra_hours):
        directory = posixpath.join(paths.root, rel)
        listing = fs.list(directory)
        report["hours"] += 1
        for st in listing:  # tokens of attempts that stopped before journaling (deleting a
            if st.name.startswith("_compact-"):  # token only ever revokes its attempt)
                fs.delete(st.path)
        for group in plan_compaction(listing, opts.small_file_bytes, opts.compact_target_bytes):
            if "snapshots_released" not in report:
                # HDFS refuses to concat a file that is in a snapshot: the landing's snapshots go
                # first (the run takes a new one after its compaction).
                report["snapshots_released"] = release_landing_snapshots(fs, paths)
            done = merge_files(fs, paths, directory, group)
            if done:
                report["merged_groups"] += 1
                report["files_before"] += done["files"]
                report["files_after"] += 1
    return report


# ---- snapshots: a consistent view for readers that read for longer than an instant -----------

SNAPSHOT_PREFIX = "landed-"


def snapshot_name(seq: int) -> str:
    return f"{SNAPSHOT_PREFIX}{seq:012d}"


def take_snapshot(fs: FileSystem, paths: TopicPaths, seq: int, keep: int) -> dict[str, Any]:
    """An HDFS snapshot of the topic folder named after the commit: everything landed through it,
    each record once, frozen (a compaction after it does not change it). The oldest beyond `keep`
    are deleted. A failure is reported, not raised: the run's records are committed already."""
    name = snapshot_name(seq)
    snapshots = posixpath.join(paths.root, ".snapshot")
    try:
        fs.allow_snapshot(paths.root)
        try:
            fs.create_snapshot(paths.root, name)
        except Exception:
            if fs.status(posixpath.join(snapshots, name)) is None:
                raise
        mine = sorted(st.name for st in fs.list(snapshots) if st.name.startswith(SNAPSHOT_PREFIX))
        for old in mine[:-keep]:
            fs.delete_snapshot(paths.root, old)
        return {"name": name, "path": posixpath.join(snapshots, name)}
    except Exception as e:
        log.warning("snapshot %s of %s failed: %s", name, paths.root, e)
        return {"name": name, "error": f"{type(e).__name__}: {str(e)[:500]}"}


def release_snapshots(client: Any, root: str) -> list[str]:
    """Delete the snapshots of every snapshottable folder at or under `root` (an `hdfs` WebHDFS
    client) and make them ordinary again: HDFS refuses to delete a folder that holds snapshots.
    Landed data folders (`dt=`) are not descended into. Returns the folders released."""
    released = []
    if client.status(root, strict=False) is None:
        return released
    if client.status(posixpath.join(root, ".snapshot"), strict=False) is not None:
        for name in client.list(posixpath.join(root, ".snapshot")):
            client.delete_snapshot(root, name)
        client.disallow_snapshot(root)
        released.append(root)
    for name, st in client.list(root, status=True):
        if st["type"] == "DIRECTORY" and not name.startswith(("dt=", "_", ".")):
            released += release_snapshots(client, posixpath.join(root, name))
    return released


def release_landing_snapshots(fs: FileSystem, paths: TopicPaths) -> int:
    """Delete the topic folder's landing snapshots (before a compaction); how many there were."""
    if not getattr(fs, "can_snapshot", False):
        return 0
    names = [
        st.name
        for st in fs.list(posixpath.join(paths.root, ".snapshot"))
        if st.name.startswith(SNAPSHOT_PREFIX)
    ]
    for name in names:
        try:
            fs.delete_snapshot(paths.root, name)
        except Exception:  # deleted by a concurrent run meanwhile
            if fs.status(posixpath.join(paths.root, ".snapshot", name)) is not None:
                raise
    return len(names)


def latest_snapshot(fs: FileSystem, paths: TopicPaths) -> str | None:
    """Path of the newest landing snapshot of a topic (read under it for a consistent view)."""
    names = [
        st.name
        for st in fs.list(posixpath.join(paths.root, ".snapshot"))
        if st.name.startswith(SNAPSHOT_PREFIX)
    ]
    return posixpath.join(paths.root, ".snapshot", max(names)) if names else None


# ---- completeness (for reprocessing) ------------------------------------------------------


def landed_through_ms(fs: FileSystem, paths: TopicPaths) -> int | None:
    """Every record appended to the topic before this instant (UTC ms) is landed: the plan time
    of the last committed run (it landed everything up to the end offsets it saw then)."""
    commit = latest_commit(fs, paths)
    return None if commit is None else commit["planned_at_ms"]


def day_bounds_ms(day: str) -> tuple[int, int]:
    start = datetime.strptime(day, "%Y-%m-%d").replace(tzinfo=timezone.utc)
    return int(start.timestamp() * 1000), int((start + timedelta(days=1)).timestamp() * 1000)


def day_complete(
    fs: FileSystem, paths: TopicPaths, day: str, lateness_ms: int = 0
) -> tuple[bool, int | None]:
    """(complete?, landed-through) for the records of `day` (by record timestamp, UTC).

    Complete when a committed run planned after the day's end plus `lateness_ms`: every record
    appended to Kafka by then is landed. Records produced later with an older timestamp (late
    data) land in the day's folders afterwards; re-run the day to include them.
    """
    through = landed_through_ms(fs, paths)
    return (through is not None and through >= day_bounds_ms(day)[1] + lateness_ms), through
