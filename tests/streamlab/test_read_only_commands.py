"""Commands that only read the configuration write nothing: not into a state folder that does not
exist yet (a fresh clone), and not secrets or Airflow files."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from streamlab.config import REPO


@pytest.fixture
def fresh_home(tmp_path):
    home = tmp_path / "var"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STREAMLAB_", "AIRFLOW"))}
    env["STREAMLAB_HOME"] = str(home)
    return home, env


@pytest.mark.parametrize(
    "argv",
    [
        [str(REPO / "bin" / "airflow"), "--help"],
        [str(REPO / "bin" / "airflow"), "config", "get-value", "database", "sql_alchemy_conn"],
        [sys.executable, "-m", "streamlab.stack", "env"],
        [sys.executable, "-m", "streamlab.stack", "status"],
    ],
    ids=["airflow --help", "airflow config get-value", "stack env", "stack status"],
)
def test_reading_the_configuration_writes_nothing(fresh_home, argv):
    home, env = fresh_home
    proc = subprocess.run(argv, env=env, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert not home.exists(), f"{' '.join(argv)} created {sorted(str(p) for p in home.rglob('*'))}"
    if argv[-1] == "sql_alchemy_conn":
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.startswith("postgresql+psycopg2://airflow:"), proc.stdout
    elif argv[-1] == "status":
        assert proc.returncode == 1 and "not running" in proc.stdout  # nothing runs there
    else:
        assert proc.returncode == 0, proc.stderr
