"""Integrity of every DAG file in dags/, found automatically (a new file is checked with no edit here).

Per file (test ids are the file names):
- it imports without error in a DagBag (cycles are import errors there too) and defines a DAG;
- every DAG has an owner other than "airflow", tags from APPROVED_TAGS, retries >= 1 on every
  task, and no cycle;
- its source passes `schedule=` and `catchup=` explicitly to every DAG (read from the AST) and
  names no host, IP, Kafka port, HDFS URI or secret (those come from Airflow connections), no
  lake path or Asset URI (streamlab/lake.py names them) and has no ImportError fallback;
- importing it takes less than PARSE_BUDGET_S in a fresh interpreter (Airflow's own import
  excluded) and does not pull in pyspark: the DAG processor re-parses every file every few seconds.

`test_checker_flags_a_bad_dag` feeds a deliberately bad DAG to the same checker functions, so
the checks are known to be able to fail.

Airflow 3.3's DagBag has no `include_examples` argument any more (the examples are a bundle of
their own): a DagBag on a folder reads that folder only.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DAGS_DIR = REPO / "dags"
DAG_FILES = sorted(DAGS_DIR.glob("*.py"))

# Add a tag here (with a word on its use) rather than inventing one in a DAG.
APPROVED_TAGS = {
    "kafka",  # talks to Kafka
    "spark",  # runs a Spark job
    "hdfs",  # reads or writes HDFS
    "streaming",  # long-running streaming job or its supervision
    "batch",  # scheduled batch processing
    "landing",  # Kafka -> HDFS landing
    "provisioning",  # creates or checks infrastructure (topics, folders)
    "lab",  # reproduces the lab
    "demo",  # sample data, demonstrations
    "maintenance",  # housekeeping (cleanup, compaction, retention)
}

# Generous: a DAG file that only wires tasks parses in well under 0.5 s here.
PARSE_BUDGET_S = float(os.environ.get("STREAMLAB_DAG_PARSE_BUDGET_S", "2.0"))
# Modules a DAG file must not import at parse time (the job code imports them, not the DAG).
HEAVY_MODULES = ("pyspark",)

FORBIDDEN_IN_SOURCE: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"\d+\.\d+\.\d+\.\d+"), "an IP address"),
    (re.compile(r"localhost", re.IGNORECASE), "a host name (localhost)"),
    (re.compile(r":9092\b"), "a Kafka port (:9092)"),
    (re.compile(r"hdfs://", re.IGNORECASE), "an HDFS URI (hdfs://)"),
    (re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s/'\"]+:\d{2,5}", re.IGNORECASE), "a URL with a port"),
    (re.compile(r"password|passwd|secret[_-]?key|api[_-]?key|access[_-]?key", re.IGNORECASE), "a secret"),
    (
        re.compile(r"""["'](/data/|streamlab-[a-z]+://)"""),
        "a lake path or Asset URI (name it in streamlab/lake.py)",
    ),
    (re.compile(r"except\s+ImportError"), "an ImportError fallback (streamlab is always importable)"),
]
DAG_CONSTRUCTORS = {"dag", "DAG"}
REQUIRED_KEYWORDS = ("schedule", "catchup")


# ---- checker functions (also exercised by the self-test) ------------------------------------


def source_problems(source: str) -> list[str]:
    """Hosts/secrets in the text, and DAG constructions without explicit schedule/catchup."""
    problems = []
    for lineno, line in enumerate(source.splitlines(), 1):
        for pattern, what in FORBIDDEN_IN_SOURCE:
            if pattern.search(line):
                problems.append(
                    f"line {lineno}: {what} in DAG source (use an Airflow connection): {line.strip()}"
                )
    try:
        tree = ast.parse(source)
    except SyntaxError as err:
        return problems + [f"syntax error: {err}"]

    def name_of(node: ast.AST) -> str | None:
        if isinstance(node, ast.Name):
            return node.id
        if isinstance(node, ast.Attribute):
            return node.attr
        return None

    found = 0
    for node in ast.walk(tree):
        decorators = getattr(node, "decorator_list", [])
        for deco in decorators:
            if name_of(deco) in DAG_CONSTRUCTORS:  # bare `@dag`: nothing is explicit
                found += 1
                problems.append(f"line {deco.lineno}: bare @{name_of(deco)}: pass schedule= and catchup=")
        if isinstance(node, ast.Call) and name_of(node.func) in DAG_CONSTRUCTORS:
            found += 1
            given = {kw.arg for kw in node.keywords}
            for keyword in REQUIRED_KEYWORDS:
                if keyword not in given:
                    problems.append(
                        f"line {node.lineno}: {name_of(node.func)}(...) without an explicit {keyword}="
                        + (" (**kwargs hide it)" if None in given else "")
                    )
    if not found:
        problems.append("no DAG(...) or @dag(...) call: a file in dags/ must define a DAG")
    return problems


def dag_problems(dag) -> list[str]:
    """Owner, tags, retries and cycles of one parsed DAG."""
    problems = []
    tags = set(dag.tags or ())
    if not tags:
        problems.append(f"{dag.dag_id}: no tags (approved: {sorted(APPROVED_TAGS)})")
    elif tags - APPROVED_TAGS:
        problems.append(f"{dag.dag_id}: tags {sorted(tags - APPROVED_TAGS)} not in APPROVED_TAGS")
    if not dag.tasks:
        problems.append(f"{dag.dag_id}: no task")
    for t in dag.tasks:
        if not t.owner or t.owner.strip().lower() == "airflow":
            problems.append(f"{dag.dag_id}.{t.task_id}: owner is {t.owner!r}: set default_args['owner']")
        if (t.retries or 0) < 1:
            problems.append(
                f"{dag.dag_id}.{t.task_id}: retries={t.retries}: set default_args['retries'] >= 1"
            )
    try:
        dag.check_cycle()
    except Exception as err:
        problems.append(f"{dag.dag_id}: cycle: {err}")
    return problems


def _same_file(key: str, path: Path, dag_folder: Path) -> bool:
    candidate = Path(key)
    if not candidate.is_absolute():
        candidate = dag_folder / candidate if not candidate.exists() else candidate.resolve()
    return candidate.resolve() == path.resolve()


def import_problems(dagbag, path: Path) -> list[str]:
    """Import errors of `path` in `dagbag` (keys may be absolute or relative to its folder)."""
    folder = Path(dagbag.dag_folder)
    return [
        f"import error:\n{err}" for key, err in dagbag.import_errors.items() if _same_file(key, path, folder)
    ]


def dags_of(dagbag, path: Path) -> list:
    folder = Path(dagbag.dag_folder)
    return [d for d in dagbag.dags.values() if _same_file(d.fileloc, path, folder)]


_PARSE_PROBE = textwrap.dedent(
    """
    import importlib.util, json, sys, time
    import airflow.sdk  # Airflow itself is loaded once by the DAG processor: not counted
    path, heavy = sys.argv[1], sys.argv[2].split(",")
    before = set(sys.modules)
    start = time.perf_counter()
    spec = importlib.util.spec_from_file_location("dag_under_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    seconds = time.perf_counter() - start
    new = set(sys.modules) - before
    loaded = sorted(h for h in heavy if any(m == h or m.startswith(h + ".") for m in new))
    print(json.dumps({"seconds": seconds, "heavy": loaded}))
    """
)


def parse_cost(path: Path) -> tuple[float, list[str]]:
    """(seconds to import `path`, heavy modules it pulled in), in a fresh interpreter."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO), str(path.parent), env.get("PYTHONPATH", "")) if p
    )
    proc = subprocess.run(
        [sys.executable, "-c", _PARSE_PROBE, str(path), ",".join(HEAVY_MODULES)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 0, f"importing {path.name} failed:\n{proc.stderr[-3000:]}"
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    return result["seconds"], result["heavy"]


def parse_problems(path: Path) -> list[str]:
    seconds, heavy = parse_cost(path)
    problems = []
    if seconds > PARSE_BUDGET_S:
        problems.append(
            f"import took {seconds:.2f} s > budget {PARSE_BUDGET_S} s (heavy work at import time?)"
        )
    if heavy:
        problems.append(f"imports {heavy} at parse time: import them inside the task or the job")
    return problems


def load_dagbag(folder: Path):
    from airflow.dag_processing.dagbag import DagBag

    # safe_mode=False: every .py file is parsed, not only those that mention "airflow" and "dag".
    return DagBag(dag_folder=str(folder), safe_mode=False)


# ---- the checks on dags/ --------------------------------------------------------------------


@pytest.fixture(scope="module")
def dagbag():
    return load_dagbag(DAGS_DIR)


def test_dags_folder_has_dag_files():
    assert DAG_FILES, f"no DAG file found in {DAGS_DIR}"


def test_dagbag_has_no_import_errors(dagbag):
    assert dagbag.import_errors == {}


@pytest.mark.parametrize("path", DAG_FILES, ids=[p.name for p in DAG_FILES])
def test_dag_file_imports_and_defines_valid_dags(dagbag, path):
    problems = import_problems(dagbag, path)
    if not problems:
        dags = dags_of(dagbag, path)
        if not dags:
            problems.append("defines no DAG")
        for dag in dags:
            problems += dag_problems(dag)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("path", DAG_FILES, ids=[p.name for p in DAG_FILES])
def test_dag_source_is_explicit_and_has_no_hosts_or_secrets(path):
    problems = source_problems(path.read_text(encoding="utf-8"))
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("path", DAG_FILES, ids=[p.name for p in DAG_FILES])
def test_dag_file_parses_within_budget(path):
    problems = parse_problems(path)
    assert not problems, "\n".join(problems)


# ---- the checks can fail ----------------------------------------------------------------------

BAD_DAG = """
from datetime import datetime

import pyspark  # heavy import at parse time

from airflow.sdk import DAG
from airflow.providers.standard.operators.empty import EmptyOperator

BROKER = "localhost:9092"
NAMENODE = "hdfs://10.0.0.1:8020"
DB_PASSWORD = "hunter2"
OUT = "/data/curated/mine"
try:
    import yaml
except ImportError:
    yaml = None

with DAG("bad_dag", start_date=datetime(2024, 1, 1), tags=["misc"]) as dag:
    EmptyOperator(task_id="a") >> EmptyOperator(task_id="b")
"""

CYCLIC_DAG = """
from datetime import datetime

from airflow.sdk import DAG
from airflow.providers.standard.operators.empty import EmptyOperator

with DAG("cyclic_dag", schedule=None, catchup=False, start_date=datetime(2024, 1, 1), tags=["demo"],
         default_args={"owner": "someone", "retries": 1}) as dag:
    a = EmptyOperator(task_id="a")
    b = EmptyOperator(task_id="b")
    a >> b >> a
"""

BROKEN_DAG = "from airflow.sdk import dag\n\n@dag(schedule=None, catchup=False\ndef broken(): ...\n"


def test_checker_flags_a_bad_dag(tmp_path):
    bad = tmp_path / "bad_dag.py"
    bad.write_text(BAD_DAG)
    (tmp_path / "cyclic_dag.py").write_text(CYCLIC_DAG)
    broken = tmp_path / "broken_dag.py"
    broken.write_text(BROKEN_DAG)

    text = "\n".join(source_problems(BAD_DAG))
    for expected in (
        "a host name (localhost)",
        "a Kafka port (:9092)",
        "an HDFS URI (hdfs://)",
        "an IP address",
        "a secret",
        "a lake path or Asset URI",
        "an ImportError fallback",
        "without an explicit schedule=",
        "without an explicit catchup=",
    ):
        assert expected in text, f"source check missed {expected!r}:\n{text}"
    assert any("bare @dag" in p for p in source_problems("from airflow.sdk import dag\n@dag\ndef f(): ...\n"))
    assert any("no DAG" in p for p in source_problems("x = 1\n"))
    assert source_problems(CYCLIC_DAG) == []

    bag = load_dagbag(tmp_path)
    [dag] = dags_of(bag, bad)
    text = "\n".join(dag_problems(dag))
    assert "owner is 'airflow'" in text
    assert "tags ['misc'] not in APPROVED_TAGS" in text
    assert "retries=0" in text

    assert import_problems(bag, bad) == []
    assert import_problems(bag, broken), "a syntax error must be an import error"
    cyclic = import_problems(bag, tmp_path / "cyclic_dag.py")
    assert cyclic and "cycle" in cyclic[0].lower(), cyclic

    _, heavy = parse_cost(bad)
    assert heavy == ["pyspark"]
    assert any("pyspark" in p for p in parse_problems(bad))


def test_good_dag_passes_the_checks(tmp_path):
    good = tmp_path / "good_dag.py"
    good.write_text(CYCLIC_DAG.replace("a >> b >> a", "a >> b").replace("cyclic_dag", "good_dag"))
    assert source_problems(good.read_text()) == []
    bag = load_dagbag(tmp_path)
    assert import_problems(bag, good) == []
    [dag] = dags_of(bag, good)
    assert dag_problems(dag) == []
    assert parse_problems(good) == []


def test_the_streamlab_page_knows_the_streaming_dags_defaults(dagbag):
    """The page reads the streaming job's group and topics as the DAG's params give them."""
    from streamlab import overview

    dag = dagbag.dags[overview.STREAMING_DAG]
    params = {k: dag.params[k] for k in overview.STREAMING_DEFAULTS}
    assert params == overview.STREAMING_DEFAULTS
    assert overview.STREAMING_TASK in dag.task_dict
    assert {overview.LANDING_DAG, overview.BATCH_DAG} <= set(dagbag.dag_ids)
