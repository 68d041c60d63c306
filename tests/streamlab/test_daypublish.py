"""Two attempts of one day publishing the batch word count, interleaved step by step, and killed.

The file system is in memory with HDFS semantics (exclusive create, rename that neither replaces
nor nests, rename-with-overwrite of a file, modification times from a test clock). Each attempt's
data file holds its attempt id and its `_SUCCESS` names it, so a reader's check is exact.
"""

from __future__ import annotations

import itertools
import json
import posixpath
import random

import pytest

from streamlab import daypublish as dp
from streamlab.daypublish import DATA_FILE, SUMMARY_FILE
from streamlab.landing import FileStatus, LocalFileSystem

ROOT = "/data/curated/wordcount"
DAY = "2025-01-01"
FINAL = f"{ROOT}/dt={DAY}"
HOUR_MS = 3600_000


class Clock:
    def __init__(self) -> None:
        self.ms = 1_700_000_000_000

    def __call__(self) -> int:
        return self.ms


class MemoryFs:
    """HDFS semantics in memory: files {path: bytes}, folders, modification times."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.files: dict[str, bytes] = {}
        self.dirs: set[str] = {"/", "/data", "/data/curated", ROOT}
        self.mtime: dict[str, int] = {p: clock() for p in self.dirs}
        self.writing: set[str] = set()  # files created and not closed yet by another client

    def _touch(self, path: str) -> None:
        self.mtime[path] = self.clock()
        self.mtime[posixpath.dirname(path)] = self.clock()

    def _under(self, path: str) -> list[str]:
        return [p for p in [*self.files, *self.dirs] if p == path or p.startswith(path + "/")]

    def status(self, path: str) -> FileStatus | None:
        name = posixpath.basename(path)
        if path in self.files:
            return FileStatus(path, name, False, len(self.files[path]), self.mtime[path])
        if path in self.dirs:
            return FileStatus(path, name, True, 0, self.mtime[path])
        return None

    def list(self, path: str) -> list[FileStatus]:
        if path not in self.dirs:
            return []
        children = [p for p in [*self.files, *self.dirs] if posixpath.dirname(p) == path and p != path]
        return [self.status(p) for p in sorted(children)]

    def read(self, path: str, offset: int = 0, length: int | None = None) -> bytes:
        if path not in self.files:
            raise FileNotFoundError(path)
        return self.files[path]

    def mkdirs(self, path: str) -> None:
        while path not in self.dirs:
            self.dirs.add(path)
            self._touch(path)
            path = posixpath.dirname(path)

    def create(self, path: str, data: bytes) -> None:
        if path in self.writing:  # HDFS: another client holds the file's lease
            raise OSError(f"AlreadyBeingCreatedException: {path} is being created by another client")
        if self.status(path) is not None:
            raise FileExistsError(path)
        self.mkdirs(posixpath.dirname(path))
        self.files[path] = data
        self._touch(path)

    def rename(self, src: str, dst: str) -> bool:
        if (
            self.status(src) is None
            or self.status(dst) is not None
            or posixpath.dirname(dst) not in self.dirs
        ):
            return False
        for p in self._under(src):
            q = dst + p[len(src) :]
            if p in self.files:
                self.files[q] = self.files.pop(p)
            else:
                self.dirs.remove(p)
                self.dirs.add(q)
            self.mtime[q] = self.mtime.pop(p)
        self._touch(posixpath.dirname(src))
        self.mtime[posixpath.dirname(dst)] = self.clock()
        return True

    def replace(self, src: str, dst: str) -> None:
        if src not in self.files or dst in self.dirs or posixpath.dirname(dst) not in self.dirs:
            raise OSError(f"replace {src} -> {dst}")
        self.files[dst] = self.files.pop(src)
        self.mtime[dst] = self.mtime.pop(src)
        self._touch(posixpath.dirname(src))
        self._touch(dst)

    def delete(self, path: str, recursive: bool = True) -> bool:
        under = self._under(path)
        if not under:
            return False
        if len(under) > 1 and not recursive:
            raise OSError(f"{path} is not empty")
        for p in under:
            self.files.pop(p, None)
            self.dirs.discard(p)
            self.mtime.pop(p, None)
        self._touch(path)
        self.mtime.pop(path, None)
        return True


def stage(fs: MemoryFs, attempt: str) -> None:
    """What the job leaves in its temporary folder before publishing."""
    tmp = dp.tmp_folder(ROOT, DAY, attempt)
    fs.create(f"{tmp}/{DATA_FILE}", attempt.encode())
    fs.create(f"{tmp}/{SUMMARY_FILE}", json.dumps({"attempt": attempt}).encode())


def published_before(fs: MemoryFs, name: str = "old") -> None:
    fs.create(f"{FINAL}/{DATA_FILE}", name.encode())
    fs.create(f"{FINAL}/{SUMMARY_FILE}", json.dumps({"attempt": name}).encode())


def reader_view(fs: MemoryFs, complete: set[str]) -> str | None:
    """What a plain reader of dt=<day> sees; asserts it is one complete result, never a mix."""
    if fs.status(FINAL) is None:
        return None
    entries = fs.list(FINAL)
    assert not [e.name for e in entries if e.is_dir], f"a folder nested in dt={DAY}: {entries}"
    data = [e.name for e in entries if dp.visible(e.name)]
    assert data == [DATA_FILE], f"dt={DAY} holds {data}"
    result = fs.read(f"{FINAL}/{DATA_FILE}").decode()
    assert result in complete
    if fs.status(f"{FINAL}/{SUMMARY_FILE}") is not None:
        summary = json.loads(fs.read(f"{FINAL}/{SUMMARY_FILE}"))
        assert summary["attempt"] == result, f"_SUCCESS of {summary['attempt']} beside data of {result}"
    return result


def run(steps, fs: MemoryFs, complete: set[str], clock: Clock | None = None, check: bool = True) -> str:
    """Drive one publication to its end, checking the reader's view after every step."""
    try:
        while True:
            if next(steps) == dp.WAIT and clock is not None:
                clock.ms += 60_000
            if check:
                reader_view(fs, complete)
    except StopIteration as done:
        return done.value


def leftovers(fs: MemoryFs) -> list[str]:
    return [e.name for e in fs.list(ROOT) if e.name.startswith("_")]


@pytest.mark.parametrize("before", ["first", "rerun"])
def test_every_interleaving_of_two_attempts_gives_one_complete_result(before):
    """All 2^12 schedules of two attempts' first 12 steps, then round-robin to the end."""
    ends = set()
    for schedule in itertools.product("AB", repeat=12):
        clock = Clock()
        fs = MemoryFs(clock)
        complete = {"A", "B"}
        if before == "rerun":
            published_before(fs)
            complete.add("old")
        stage(fs, "A")
        stage(fs, "B")
        gens = {a: dp.publication(fs, ROOT, DAY, a, clock) for a in "AB"}
        results: dict[str, str] = {}
        order = [*schedule, *("AB" * 20)]
        for who in order:
            if who in results:
                continue
            try:
                next(gens[who])
            except StopIteration as done:
                results[who] = done.value
            reader_view(fs, complete)
            if len(results) == 2:
                break
        assert len(results) == 2, f"{''.join(schedule)}: an attempt never finished"
        last = reader_view(fs, complete)
        assert last in ("A", "B")
        assert fs.status(f"{FINAL}/{SUMMARY_FILE}") is not None
        assert leftovers(fs) == [], f"{''.join(schedule)}: left {leftovers(fs)}"
        ends.add((tuple(sorted(results.values())), last))
    assert {last for _, last in ends} == {"A", "B"}  # both orders happened


def test_a_second_attempt_never_nests_its_folder_in_a_day_created_meanwhile():
    """The review's case: A checks dt=<day> is absent, B publishes it, A renames."""
    clock = Clock()
    fs = MemoryFs(clock)
    stage(fs, "A")
    stage(fs, "B")
    a = dp.publication(fs, ROOT, DAY, "A", clock)
    assert next(a) == "lock"
    b = dp.publication(fs, ROOT, DAY, "B", clock)
    assert next(b) == "lock"
    assert next(a) == "publish"  # A holds the lock
    assert next(b) == dp.WAIT
    assert run(a, fs, {"A", "B"}) == "created"
    assert run(b, fs, {"A", "B"}, clock) == "replaced"
    assert reader_view(fs, {"B"}) == "B"
    assert [e.name for e in fs.list(FINAL)] == [SUMMARY_FILE, DATA_FILE]


def test_a_folder_nested_by_an_older_version_is_removed():
    clock = Clock()
    fs = MemoryFs(clock)
    published_before(fs)
    fs.create(f"{FINAL}/_tmp-dt={DAY}-0123456789ab/{DATA_FILE}", b"x")  # the old rename's nesting
    stage(fs, "A")
    assert run(dp.publication(fs, ROOT, DAY, "A", clock), fs, {"A", "old"}, check=False) == "replaced"
    assert [e.name for e in fs.list(FINAL)] == [SUMMARY_FILE, DATA_FILE]
    assert reader_view(fs, {"A"}) == "A"


def test_start_up_keeps_a_live_attempts_folder_and_removes_day_old_leftovers():
    clock = Clock()
    fs = MemoryFs(clock)
    fs.create(f"{ROOT}/_tmp-dt={DAY}-aaaaaaaaaaaa/{DATA_FILE}", b"killed long ago")  # older name
    fs.create(f"{ROOT}/_old-{DAY}-bbbbbbbbbbbb/{DATA_FILE}", b"killed long ago")
    clock.ms += 25 * HOUR_MS
    stage(fs, "A")  # A is computing right now
    assert sorted(dp.remove_leftovers(fs, ROOT, clock())) == [
        f"_old-{DAY}-bbbbbbbbbbbb",
        f"_tmp-dt={DAY}-aaaaaaaaaaaa",
    ]
    assert leftovers(fs) == [f"_tmp-{DAY}-A"]
    clock.ms += 2 * HOUR_MS  # B starts two hours later: A may still be running
    assert dp.remove_leftovers(fs, ROOT, clock()) == []
    assert run(dp.publication(fs, ROOT, DAY, "A", clock), fs, {"A"}) == "created"


def steps_of_one_publication(before: str) -> int:
    clock = Clock()
    fs = MemoryFs(clock)
    if before == "rerun":
        published_before(fs)
    stage(fs, "A")
    return sum(1 for _ in dp.publication(fs, ROOT, DAY, "A", clock))


@pytest.mark.parametrize("before", ["first", "rerun", "foreign"])
def test_a_kill_at_any_step_leaves_a_state_the_next_attempt_repairs(before):
    complete = {"A", "B", "old"}
    for kill_at in range(steps_of_one_publication("first" if before == "first" else "rerun") + 1):
        clock = Clock()
        fs = MemoryFs(clock)
        if before == "rerun":
            published_before(fs)
        if before == "foreign":  # a layout this job did not write: the folders are swapped
            fs.create(f"{FINAL}/part-00000-x.parquet", b"old")
            fs.create(f"{FINAL}/part-00001-x.parquet", b"old")
        stage(fs, "A")
        a = dp.publication(fs, ROOT, DAY, "A", clock)
        for _ in range(kill_at):
            next(a, None)
            if before != "foreign":
                reader_view(fs, complete)
        a.close()  # killed: no finally runs in the publication, its lock stays
        clock.ms += 60_000  # the retry, a minute later, waits for the lock to be stale
        stage(fs, "B")
        steps = dp.publication(fs, ROOT, DAY, "B", clock)
        assert run(steps, fs, complete, clock, check=before != "foreign") in (
            "created",
            "replaced",
            "swapped",
        )
        assert reader_view(fs, {"B"}) == "B"
        assert fs.status(f"{FINAL}/{SUMMARY_FILE}") is not None
        left = leftovers(fs)
        assert set(left) <= {f"_tmp-{DAY}-A", f"_tmp-{DAY}-A.lock", f"_old-{DAY}-A"}, left
        clock.ms += 25 * HOUR_MS
        dp.remove_leftovers(fs, ROOT, clock())
        assert leftovers(fs) == []


def test_a_lock_another_attempt_is_still_writing_makes_this_one_wait():
    """HDFS answers the create of a file that another client is still writing with
    AlreadyBeingCreatedException, not FileExistsError; two attempts that reach the lock together
    must not fail for that, so the lock is renamed in whole, never created in place."""
    clock = Clock()
    fs = MemoryFs(clock)
    stage(fs, "A")
    stage(fs, "B")
    lock = dp.lock_file(ROOT, DAY)
    fs.create(lock, b"")
    fs.writing.add(lock)  # as an attempt creating the lock in place leaves it for a moment
    b = dp.publication(fs, ROOT, DAY, "B", clock)
    assert next(b) == "lock"
    assert next(b) == dp.WAIT
    fs.files[lock] = b"A"
    fs.writing.discard(lock)  # A closed it, then died holding it
    clock.ms += dp.LOCK_TTL_MS + 1
    assert run(b, fs, {"A", "B"}, clock) == "created"
    assert reader_view(fs, {"B"}) == "B"
    assert leftovers(fs) == []


def test_a_lock_taken_after_a_long_wait_is_not_stale():
    """The lock's age counts from when it was taken, not from when the attempt began to wait."""
    clock = Clock()
    fs = MemoryFs(clock)
    for a in "ABC":
        stage(fs, a)
    a = dp.publication(fs, ROOT, DAY, "A", clock)
    assert [next(a), next(a)] == ["lock", "publish"]  # A holds the lock, and is slow
    b = dp.publication(fs, ROOT, DAY, "B", clock)
    assert [next(b), next(b)] == ["lock", dp.WAIT]
    clock.ms += 4 * 60_000
    assert [next(b), next(b)] == ["lock", dp.WAIT]
    assert run(a, fs, {"A"}) == "created"
    clock.ms += 30_000
    assert [next(b), next(b)] == ["lock", "publish"]  # B takes it, 4.5 minutes after it began
    clock.ms += 61_000
    c = dp.publication(fs, ROOT, DAY, "C", clock)
    assert [next(c), next(c)] == ["lock", dp.WAIT]  # B's lock is a minute old: not broken
    assert run(b, fs, {"A", "B"}) == "replaced"
    assert run(c, fs, {"A", "B", "C"}, clock) == "replaced"
    assert reader_view(fs, {"C"}) == "C"
    assert leftovers(fs) == []


@pytest.mark.parametrize("pause_at", range(1, 5))
def test_a_zombie_whose_lock_was_broken_changes_nothing(pause_at):
    """A pauses holding the lock past its TTL, right after checking that it holds it (before the
    change it checked for); B breaks the lock and publishes; A resumes and changes nothing."""
    clock = Clock()
    fs = MemoryFs(clock)
    published_before(fs)
    stage(fs, "A")
    stage(fs, "B")
    a = dp.publication(fs, ROOT, DAY, "A", clock)
    for _ in range(pause_at + 1):  # "lock", then pause_at steps of the publication
        next(a)
        reader_view(fs, {"A", "old"})
    clock.ms += dp.LOCK_TTL_MS + 1
    assert run(dp.publication(fs, ROOT, DAY, "B", clock), fs, {"A", "B", "old"}, clock) == "replaced"
    with pytest.raises(dp.Fenced):
        run(a, fs, {"A", "B", "old"})
    assert reader_view(fs, {"B"}) == "B"
    assert fs.status(f"{FINAL}/{SUMMARY_FILE}") is not None


def test_random_interleavings_of_three_attempts_with_kills_and_pauses():
    rng = random.Random(7)
    for _ in range(3000):
        clock = Clock()
        fs = MemoryFs(clock)
        complete = {"A", "B", "C", "old"}
        if rng.random() < 0.5:
            published_before(fs)
        for a in "ABC":
            stage(fs, a)
        gens = {a: dp.publication(fs, ROOT, DAY, a, clock) for a in "ABC"}
        live = set(gens)
        for _ in range(200):
            if not live:
                break
            who = rng.choice(sorted(live))
            r = rng.random()
            if r < 0.03:
                gens[who].close()  # killed
                live.discard(who)
                continue
            if r < 0.06:
                clock.ms += dp.LOCK_TTL_MS + 1  # everyone else paused long
            try:
                if next(gens[who]) == dp.WAIT:
                    clock.ms += 1000
            except (StopIteration, dp.Fenced):
                live.discard(who)
            reader_view(fs, complete)
        assert not live


def test_local_file_system_has_the_same_semantics(tmp_path):
    fs = LocalFileSystem()
    root = str(tmp_path / "wordcount")
    (tmp_path / "wordcount").mkdir()
    for a in ("A", "B"):
        tmp = dp.tmp_folder(root, DAY, a)
        fs.create(f"{tmp}/{DATA_FILE}", a.encode())
        fs.create(f"{tmp}/{SUMMARY_FILE}", json.dumps({"attempt": a}).encode())
    with pytest.raises(FileExistsError):
        fs.create(f"{dp.tmp_folder(root, DAY, 'A')}/{DATA_FILE}", b"again")
    assert dp.publish(fs, root, DAY, "A", wait_s=0) == "created"
    assert not fs.rename(dp.tmp_folder(root, DAY, "B"), f"{root}/dt={DAY}")  # no nesting
    assert dp.publish(fs, root, DAY, "B", wait_s=0) == "replaced"
    final = f"{root}/dt={DAY}"
    assert [e.name for e in fs.list(final)] == [SUMMARY_FILE, DATA_FILE]
    assert fs.read(f"{final}/{DATA_FILE}") == b"B"
    assert json.loads(fs.read(f"{final}/{SUMMARY_FILE}"))["attempt"] == "B"
    assert [e.name for e in fs.list(root)] == [f"dt={DAY}"]
