"""How the local Airflow talks to its SQLite metadata database.

SQLite takes one writer at a time. Two things made Airflow's writes fail with "database is
locked" on the local stack (both seen in CI, both on `airflow backfill create`):

- Python's sqlite3 waits only 5 s for the write lock. With the scheduler, dag-processor,
  api-server, triggerer and CLI commands writing on 2 busy cores, that is not enough. It now
  waits up to 120 s, and the database is in WAL mode (see `streamlab.stack.use_wal_journal`),
  so readers never hold a writer up.
- A transaction that starts with a SAVEPOINT (SQLAlchemy's `session.begin_nested()`, which
  Airflow's backfill uses for each run) begins as a *read* transaction: sqlite3 emits BEGIN
  only before INSERT/UPDATE/DELETE, and SAVEPOINT is none of them. When it then writes after
  another process has committed, SQLite refuses at once (SQLITE_BUSY_SNAPSHOT) because waiting
  could not help, so no timeout saves it. `SavepointSafeConnection` begins such a transaction
  with BEGIN IMMEDIATE, which takes the write lock first (waiting for it like any writer).

Airflow imports `CONNECT_ARGS` / `CONNECT_ARGS_ASYNC` through `[database]
sql_alchemy_connect_args(_async)`, set in `StackConfig.env()`. The multi-node deployment uses
PostgreSQL and none of this.
"""

from __future__ import annotations

import sqlite3

LOCK_WAIT_S = 120


class SavepointSafeCursor(sqlite3.Cursor):
    def execute(self, sql, parameters=(), /):
        if not self.connection.in_transaction and sql.lstrip()[:9].upper() == "SAVEPOINT":
            # RELEASE of this savepoint then no longer commits: the caller's commit() does.
            super().execute("BEGIN IMMEDIATE")
        return super().execute(sql, parameters)


class SavepointSafeConnection(sqlite3.Connection):
    def cursor(self, factory=SavepointSafeCursor):
        return super().cursor(factory)


CONNECT_ARGS: dict[str, object] = {"timeout": LOCK_WAIT_S, "factory": SavepointSafeConnection}
CONNECT_ARGS_ASYNC: dict[str, object] = dict(CONNECT_ARGS)  # aiosqlite hands both to sqlite3.connect
