"""The SQLite connection Airflow gets on the local stack: a savepoint-started transaction that
writes after another process committed must wait for the lock, not fail at once."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from streamlab.airflow_sqlite import CONNECT_ARGS, SavepointSafeConnection
from streamlab.stack import use_wal_journal


@pytest.fixture
def db(tmp_path) -> Path:
    path = tmp_path / "airflow.db"
    use_wal_journal(path)
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE dag_run (id INTEGER PRIMARY KEY, run_id TEXT)")
    return path


def other_process_writes(db: Path, done: threading.Event) -> None:
    with sqlite3.connect(db, timeout=30) as conn:  # a scheduler's commit, as it may come any time
        conn.execute("INSERT INTO dag_run (run_id) VALUES ('scheduled')")
    done.set()


def savepoint_then_write(db: Path, **connect_args) -> threading.Event:
    """What `session.begin_nested()` in Airflow's backfill does: SAVEPOINT, read, then write,
    while another connection commits between the read and the write."""
    conn = sqlite3.connect(db, timeout=30, **connect_args)
    other_done = threading.Event()
    try:
        cur = conn.cursor()
        cur.execute("SAVEPOINT sa_savepoint_1")
        cur.execute("SELECT count(*) FROM dag_run").fetchall()
        other = threading.Thread(target=other_process_writes, args=(db, other_done))
        other.start()
        other_done.wait(2)  # it commits unless our transaction already holds the write lock
        cur.execute("INSERT INTO dag_run (run_id) VALUES ('backfill')")
        cur.execute("RELEASE SAVEPOINT sa_savepoint_1")
        conn.commit()
        other.join(30)
    finally:
        conn.close()
    return other_done


def run_ids(db: Path) -> list[str]:
    with sqlite3.connect(db) as conn:
        return sorted(r[0] for r in conn.execute("SELECT run_id FROM dag_run"))


def test_plain_sqlite3_fails_at_once_which_is_the_bug(db):
    with pytest.raises(sqlite3.OperationalError, match="database is locked"):
        savepoint_then_write(db)


def test_savepoint_safe_connection_waits_for_the_lock_and_both_writes_land(db):
    other_done = savepoint_then_write(db, factory=SavepointSafeConnection)
    assert other_done.is_set()
    assert run_ids(db) == ["backfill", "scheduled"]


def test_through_sqlalchemy_nested_sessions_commit_and_roll_back(db):
    engine = sa.create_engine(f"sqlite:///{db}", connect_args=dict(CONNECT_ARGS))
    table = sa.table("dag_run", sa.column("run_id"))
    with Session(engine) as session:
        with session.begin_nested():
            session.execute(sa.insert(table).values(run_id="kept"))
        # The savepoint's RELEASE did not commit (with plain sqlite3 it does, and this is False):
        # the transaction stays open, holding the lock, until the session commits.
        assert session.connection().connection.dbapi_connection.in_transaction
        nested = session.begin_nested()
        session.execute(sa.insert(table).values(run_id="rolled back"))
        nested.rollback()
        session.commit()
    engine.dispose()
    assert run_ids(db) == ["kept"]
