"""Publishing one day's result folder (`<root>/dt=<day>/`) when attempts of that day overlap.

The batch word count writes its result (one data file and a `_SUCCESS` summary naming the
attempt) into `<root>/_tmp-<day>-<attempt>/result/`, then publishes it here, holding the day's
lock (`<root>/_lock-<day>`, written whole beside it and renamed in; the rename fails
when the lock exists). Every change is a rename out of or into the
attempt's own folder, so deleting that folder fences the attempt, whatever it is doing: a lock
older than `LOCK_TTL_MS` is moved aside (not deleted: the file names its holder), and the next
holder deletes the folders of the attempts named by moved-aside locks before its first change
(docs/landing.md, "Daily reprocessing and backfill").

Under the lock:
- no `dt=<day>` yet: one rename of `result/`, which fails instead of moving it inside a
  `dt=<day>` created meanwhile (HDFS `Options.Rename.NONE`);
- a folder this job wrote (one visible data file): `_SUCCESS` is moved out, the data file is
  replaced by one atomic rename-with-overwrite, then the new `_SUCCESS` is moved in. A reader sees
  the old data or the new data, and `_SUCCESS`, when present, always describes the file next to it;
- another layout: the folders are swapped (readers may briefly find no `dt=<day>`).
Hidden folders left inside `dt=<day>` by older versions (`_tmp-dt=...`, which Spark does not hide
because of the `=`) are removed. Temporary names carry no `=`. Leftovers of killed attempts
(`_tmp-`, `_old-`, `_stale-` names) are removed by age only (`LEFTOVER_AGE_MS`, HDFS
modification time), never another attempt's live folder.

`publication()` is a generator that yields a step name before each change (after checking it
still holds the lock), so tests interleave attempts step by step and freeze one between its check
and its change; `publish()` runs it, sleeping while the lock is held by another attempt.
"""

from __future__ import annotations

import posixpath
import time
from collections.abc import Callable, Iterator

from streamlab.landing import FileSystem

DATA_FILE = "part-00000.parquet"
SUMMARY_FILE = "_SUCCESS"
LOCK_TTL_MS = 5 * 60_000  # a publication takes a few RPCs: a lock this old belongs to a dead attempt
LEFTOVER_AGE_MS = 24 * 3600_000  # temporary folders older than this are leftovers (jobs time out at 2 h)
LEFTOVER_PREFIXES = ("_tmp-", "_old-", "_stale-")
WAIT = "wait"  # the step yielded while another attempt holds the lock


class Fenced(RuntimeError):
    """This attempt no longer holds the day's lock: it must not change the published day."""


# The file system: `streamlab.landing.FileSystem` (HDFS semantics; `LocalFileSystem` for tests and
# file:// runs), of which the publication uses status, list, read, create, rename, replace, delete.
DayFileSystem = FileSystem


def attempt_folder(root: str, day: str, attempt: str) -> str:
    """The attempt's own hidden folder: its result, and what it sets aside. Deleting it fences the
    attempt: every change a publication makes renames something out of it or into it."""
    return posixpath.join(root, f"_tmp-{day}-{attempt}")


def tmp_folder(root: str, day: str, attempt: str) -> str:
    """Where the job writes its result (a data file and `_SUCCESS`) before publishing it."""
    return posixpath.join(attempt_folder(root, day, attempt), "result")


def lock_file(root: str, day: str) -> str:
    return posixpath.join(root, f"_lock-{day}")


def pending_lock_file(root: str, day: str, attempt: str) -> str:
    """The lock as this attempt writes it before renaming it in (a leftover by age if killed)."""
    return posixpath.join(root, f"_tmp-{day}-{attempt}.lock")


STALE_LOCK = "_stale-lock-"


def visible(name: str) -> bool:
    return not name.startswith(("_", "."))


def remove_leftovers(fs: DayFileSystem, root: str, now_ms: int, age_ms: int = LEFTOVER_AGE_MS) -> list[str]:
    """Delete temporary folders of any day older than `age_ms` (by modification time)."""
    removed = []
    for e in fs.list(root):
        if e.name.startswith(LEFTOVER_PREFIXES) and now_ms - e.mtime_ms > age_ms:
            fs.delete(posixpath.join(root, e.name), recursive=True)
            removed.append(e.name)
    return removed


def publication(
    fs: DayFileSystem,
    root: str,
    day: str,
    attempt: str,
    now_ms: Callable[[], int],
    lock_ttl_ms: int = LOCK_TTL_MS,
) -> Iterator[str]:
    """Publish `tmp_folder(root, day, attempt)` as `root/dt=<day>`; yields before each change.

    Returns (StopIteration.value) "created", "replaced" or "swapped"; raises Fenced when another
    attempt took the day over from this one.

    Fencing does not rely on time: a lock older than `lock_ttl_ms` is only *moved aside* (to a
    `_stale-lock-` file that keeps the holder's id); the next holder, before its first change,
    deletes the folder of every attempt named by such a file. Each change of a publication is a
    rename out of or into the attempt's own folder, so a fenced attempt, even one frozen between
    its check and its change, fails to make it (HDFS checks the source and the destination's
    parent atomically).
    """
    final = posixpath.join(root, f"dt={day}")
    own = attempt_folder(root, day, attempt)
    result = tmp_folder(root, day, attempt)
    lock = lock_file(root, day)
    token = attempt.encode()

    def fenced() -> Fenced:
        return Fenced(f"attempt {attempt} was fenced off {day} by another attempt: nothing more published")

    def owned() -> None:  # early exit; the folder is what makes it safe
        try:
            holder = fs.read(lock)
        except FileNotFoundError:
            holder = None
        if holder != token or fs.status(own) is None:
            raise fenced()

    def checked(done: bool) -> None:
        if not done:
            if fs.status(own) is None:
                raise fenced()
            raise RuntimeError(f"publishing {day}: a rename failed with {own} in place")

    # The lock is written whole under this attempt's name, then renamed in: HDFS refuses to create
    # a file that another client is still writing (AlreadyBeingCreatedException), so two attempts
    # creating `_lock-<day>` at the same moment would make the loser fail instead of wait.
    pending = pending_lock_file(root, day, attempt)
    while True:  # take the day's lock
        yield "lock"
        if fs.status(own) is None:
            fs.delete(pending)
            raise fenced()
        fs.delete(pending)  # written anew each try: the lock's age is counted from its mtime
        fs.create(pending, token)
        if fs.rename(pending, lock):
            if fs.status(own) is None:  # fenced while taking it: give it back at once
                release_lock(fs, root, day, attempt)
                raise fenced()
            break
        st = fs.status(lock)
        if st is not None and now_ms() - st.mtime_ms > lock_ttl_ms:
            yield "break-lock"  # the holder is fenced below, before anything changes
            fs.rename(lock, posixpath.join(root, f"{STALE_LOCK}{day}-{attempt}"))
            continue
        yield WAIT

    for e in fs.list(root):  # fence every attempt whose lock was moved aside
        if e.name.startswith(f"{STALE_LOCK}{day}-"):
            stale = posixpath.join(root, e.name)
            yield "fence"
            try:
                holder = fs.read(stale).decode()
            except FileNotFoundError:
                continue
            if holder != attempt:
                fs.delete(attempt_folder(root, day, holder), recursive=True)
            fs.delete(stale)

    owned()
    yield "publish"
    if fs.rename(result, final):  # fails (no nesting) when dt=<day> exists
        outcome = "created"
    else:
        if fs.status(own) is None:
            raise fenced()
        if fs.status(final) is None:
            raise RuntimeError(f"cannot publish {result}: rename to {final} failed")
        entries = fs.list(final)
        for e in entries:  # hidden folders nested by older versions: Spark reads `_x=y` folders
            if e.is_dir and e.name.startswith(("_tmp-", "_old-")):
                owned()
                yield "repair"
                fs.delete(posixpath.join(final, e.name), recursive=True)
        if [e.name for e in entries if visible(e.name)] in ([DATA_FILE], []):
            owned()
            yield "drop-summary"
            if not fs.rename(posixpath.join(final, SUMMARY_FILE), posixpath.join(own, "old-summary")):
                checked(fs.status(posixpath.join(final, SUMMARY_FILE)) is None)  # none to drop
            owned()
            yield "replace-data"
            try:
                fs.replace(posixpath.join(result, DATA_FILE), posixpath.join(final, DATA_FILE))
            except OSError:
                checked(False)
            owned()
            yield "move-summary"
            try:
                fs.replace(posixpath.join(result, SUMMARY_FILE), posixpath.join(final, SUMMARY_FILE))
            except OSError:
                checked(False)
            outcome = "replaced"
        else:  # not a layout this job wrote: swap the folders
            owned()
            yield "set-aside"
            checked(fs.rename(final, posixpath.join(own, "old")))
            owned()
            yield "swap-in"
            checked(fs.rename(result, final))
            outcome = "swapped"

    yield "release"
    if not fs.delete(own, recursive=True):
        return outcome  # fenced after its last change: the lock is another attempt's by now
    release_lock(fs, root, day, attempt)
    return outcome


def release_lock(fs: DayFileSystem, root: str, day: str, attempt: str) -> None:
    """Give the day's lock back. Never deleted by name: it may be another attempt's by now."""
    aside = posixpath.join(root, f"{STALE_LOCK}{day}-{attempt}-released")
    if fs.rename(lock_file(root, day), aside):
        try:
            if fs.read(aside) == attempt.encode():
                fs.delete(aside)  # ours; another's stays, to be fenced by the next holder
        except FileNotFoundError:
            pass


def publish(
    fs: DayFileSystem,
    root: str,
    day: str,
    attempt: str,
    wait_s: float = 1.0,
    timeout_s: float = 2 * LOCK_TTL_MS / 1000,
) -> str:
    """Run `publication` to its end, waiting `wait_s` between tries of a lock held by another."""
    deadline = time.monotonic() + timeout_s
    steps = publication(fs, root, day, attempt, lambda: int(time.time() * 1000))
    try:
        while True:
            if next(steps) == WAIT:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the lock of {day} stayed taken for {timeout_s:.0f} s")
                time.sleep(wait_s)
    except StopIteration as done:
        return done.value
