"""The metadata database's guards: states of var/ that PostgreSQL must not open blindly."""

from __future__ import annotations

import pytest

from streamlab.config import StackConfig
from streamlab.stack import postgres, processes


@pytest.fixture
def cfg(tmp_path):
    return StackConfig(home=tmp_path / "var", ports={"postgres": 5432})


def test_the_bundled_server_is_postgresql_18():
    assert postgres.server_major() == "18"
    assert (postgres.bin_dir() / "initdb").exists()


def test_a_data_folder_of_another_major_version_is_refused_untouched(cfg):
    folder = postgres.data_dir(cfg)
    folder.mkdir(parents=True)
    (folder / "PG_VERSION").write_text("16\n")
    (folder / "base").mkdir()
    with pytest.raises(postgres.PostgresError) as err:
        postgres.check_state(cfg)
    message = str(err.value)
    assert "holds a PostgreSQL 16 database" in message and "runs PostgreSQL 18" in message
    assert "pg_dumpall" in message and f"mv {folder} {folder}-pg16" in message
    assert sorted(p.name for p in folder.iterdir()) == ["PG_VERSION", "base"]


def test_a_sqlite_state_from_before_is_named_with_the_way_out(cfg):
    sqlite_db = cfg.airflow_home / "airflow.db"
    sqlite_db.parent.mkdir(parents=True)
    sqlite_db.write_bytes(b"SQLite format 3\0")
    with pytest.raises(postgres.PostgresError) as err:
        postgres.check_state(cfg)
    assert f"mv {sqlite_db} {sqlite_db}.sqlite-backup" in str(err.value)
    assert sqlite_db.read_bytes() == b"SQLite format 3\0"


def test_a_current_data_folder_passes_even_beside_an_old_sqlite_file(cfg):
    folder = postgres.data_dir(cfg)
    folder.mkdir(parents=True)
    (folder / "PG_VERSION").write_text("18\n")
    (cfg.airflow_home).mkdir(parents=True)
    (cfg.airflow_home / "airflow.db").write_bytes(b"")
    postgres.check_state(cfg)


def test_the_server_listens_on_loopback_only(cfg):
    cmd = postgres.command(cfg)
    assert "listen_addresses=127.0.0.1" in cmd and "unix_socket_directories=" in cmd
    assert "port=5432" in cmd


def write_lock(cfg, pid: int, shmid: str = "42") -> None:
    folder = postgres.data_dir(cfg)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "postmaster.pid").write_text(
        f"{pid}\n{folder}\n1700000000\n5432\n\n127.0.0.1\n  5432001   {shmid}\nready\n"
    )


def test_a_killed_servers_zombie_lock_file_is_removed(cfg, monkeypatch):
    """PostgreSQL takes a not-yet-reaped (zombie) postmaster for a live one and refuses to start."""
    import subprocess

    zombie = subprocess.Popen(["true"])  # exits at once; not waited for: a zombie
    try:
        monkeypatch.setattr(postgres, "_shm_attached", lambda shmid: 0)
        for _ in range(100):
            if processes.zombie(zombie.pid):
                break
            postgres.time.sleep(0.05)
        write_lock(cfg, zombie.pid)
        postgres.wait_for_old_server(cfg)
        assert not (postgres.data_dir(cfg) / "postmaster.pid").exists()
    finally:
        zombie.wait()


def test_a_live_servers_lock_file_is_left_alone_at_once(cfg, monkeypatch):
    import os

    monkeypatch.setattr(postgres, "_shm_attached", lambda shmid: pytest.fail("no wait for a live server"))
    write_lock(cfg, os.getpid())
    postgres.wait_for_old_server(cfg)
    assert (postgres.data_dir(cfg) / "postmaster.pid").exists()


def test_children_still_holding_shared_memory_are_waited_for_then_named(cfg, monkeypatch):
    attached = iter([2, 1, 0])
    monkeypatch.setattr(postgres, "_shm_attached", lambda shmid: next(attached))
    monkeypatch.setattr(postgres.time, "sleep", lambda s: None)
    write_lock(cfg, 999_999_999)  # no such process
    postgres.wait_for_old_server(cfg)  # returns once none is attached
    monkeypatch.setattr(postgres, "_shm_attached", lambda shmid: 3)
    with pytest.raises(postgres.PostgresError, match=r"3 process\(es\) of a PostgreSQL server .* \(id 42\)"):
        postgres.wait_for_old_server(cfg, timeout=0)
