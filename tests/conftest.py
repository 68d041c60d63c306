"""Shared fixtures.

`stack` gives a running local stack (real Kafka, HDFS, Airflow) for integration tests:
- by default an ISOLATED one, with its own temp state folder and free ports, started once per
  session and always stopped at the end (no process left behind);
- with STREAMLAB_TEST_STACK=reuse, the developer's running stack (`make up`) instead.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

# py4j logs "Closing down clientserver connection" from a finalizer at interpreter exit, after
# pytest closed its streams ("--- Logging error ---" noise at the end of a run).
logging.getLogger("py4j").setLevel(logging.WARNING)

REPO = Path(__file__).resolve().parents[1]


def run_stack(command: str, env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "streamlab.stack", command],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def isolated_env(home: Path, start_dags: bool = False) -> dict[str, str]:
    """Environment selecting a stack in `home` with free ports for every service.

    Extra stacks made by error-path tests skip the platform DAGs (topics, streaming) to stay light.
    """
    from streamlab.config import free_ports
    from streamlab.stack.registry import port_defaults

    env = dict(os.environ)
    env["STREAMLAB_HOME"] = str(home)
    env["STREAMLAB_START_DAGS"] = "1" if start_dags else "0"
    for name, port in zip(port_defaults(), free_ports(len(port_defaults())), strict=False):
        env[f"STREAMLAB_PORT_{name.upper()}"] = str(port)
    return env


@pytest.fixture(scope="session")
def stack(tmp_path_factory):
    from streamlab.config import StackConfig

    if os.environ.get("STREAMLAB_TEST_STACK") == "reuse":
        cfg = StackConfig.load()
        proc = run_stack("status", dict(os.environ), timeout=60)
        if proc.returncode != 0:
            pytest.fail(f"STREAMLAB_TEST_STACK=reuse but the stack is not healthy:\n{proc.stdout}")
        yield cfg
        return

    home = tmp_path_factory.mktemp("stack")
    env = isolated_env(home, start_dags=True)
    env.setdefault("STREAMLAB_AIRFLOW_PARALLELISM", "6")
    # test_deadline_alerts holds a landing run past this deadline. A missed deadline only runs
    # the alert callback (a log line): the other tests' landings are not changed by it.
    env.setdefault("STREAMLAB_LANDING_DEADLINE_MINUTES", "1")
    # Tests and the code under test find this stack through StackConfig.load().
    with selected_stack(env):
        try:
            proc = run_stack("up", env)
            if proc.returncode != 0:
                pytest.fail(f"isolated stack did not come up:\n{proc.stdout}\n{proc.stderr}")
            yield StackConfig.load(home)
        finally:
            down = run_stack("down", env, timeout=300)
            print(down.stdout, down.stderr)


@contextlib.contextmanager
def selected_stack(env: dict[str, str]):
    """Make `env`'s stack the one StackConfig.load() finds in this process, then restore.

    STREAMLAB_PORT_* override the ports saved in a stack's home, so a second stack (the cluster
    profile) loaded while the session stack's variables are set would get the session's ports.
    """
    keys = {k for k in set(env) | set(os.environ) if k.startswith("STREAMLAB_")}
    saved = {k: os.environ.get(k) for k in keys}
    for k in keys:
        if k in env:
            os.environ[k] = env[k]
        else:
            os.environ.pop(k, None)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
