"""Maven that cannot reach its repository gives a clear message, not a stack trace; the package
archive every Spark job gets with --py-files is deterministic, never stale, and enough by itself."""

import os
import re
import shutil
import subprocess
import sys
import zipfile

import pytest

from streamlab import deps
from tests.conftest import REPO


def test_unreachable_maven_repository_is_a_clear_error(tmp_path):
    settings = tmp_path / "settings.xml"
    settings.write_text(
        "<settings><localRepository>%s</localRepository><mirrors><mirror><id>dead</id>"
        "<mirrorOf>*</mirrorOf><url>http://127.0.0.1:9/maven2</url></mirror></mirrors></settings>"
        % (tmp_path / "empty-repo")
    )
    env = dict(os.environ, STREAMLAB_DEPS=str(tmp_path / "deps"), STREAMLAB_MAVEN_ARGS=f"-s {settings}")
    proc = subprocess.run(
        [sys.executable, "-m", "streamlab.deps"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode != 0
    assert "Maven could not reach its repository" in proc.stderr
    assert "Traceback" not in proc.stderr
    # Nothing half-downloaded is left where a later run would trust it.
    assert not list((tmp_path / "deps" / "jars").glob("*/.stamp"))


def test_a_jre_without_javac_is_a_clear_error(tmp_path):
    """jvm/src is compiled on the user's machine: a JRE-only Java gets told what to install."""
    jre = tmp_path / "jre"
    (jre / "bin").mkdir(parents=True)
    env = dict(os.environ, STREAMLAB_DEPS=str(tmp_path / "deps"), JAVA_HOME=str(jre))
    code = "from streamlab import deps; from streamlab.config import StackConfig; deps.build_project_jar(StackConfig.load())"
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode != 0
    assert "A JDK is needed to compile jvm/src" in proc.stderr and "openjdk-17-jdk-headless" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "deps" / "jars" / "streamlab" / "streamlab-jvm.jar").exists()


# ---- the package archive ------------------------------------------------------------------------


def _copy_package(dst):
    """The package's .py files only, as the Dockerfile's build context has them."""
    for src in deps.source_files():
        target = dst / "streamlab" / src.relative_to(deps.PACKAGE)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, target)
    return dst / "streamlab"


def test_archive_is_deterministic_and_holds_the_package_sources_only(tmp_path):
    a, b = tmp_path / "a.zip", tmp_path / "b.zip"
    assert deps.build_python_archive(a) is True
    (deps.PACKAGE / "__pycache__").mkdir(exist_ok=True)  # byte code never goes in
    assert deps.build_python_archive(b) is True
    assert a.read_bytes() == b.read_bytes()
    with zipfile.ZipFile(a) as zf:
        names = zf.namelist()
        assert {"streamlab/__init__.py", "streamlab/lake.py", "streamlab/landing.py"} <= set(names)
        assert {"streamlab/textproc.py", "streamlab/topics.py", "streamlab/parquet_footer.py"} <= set(names)
        assert all(n.startswith("streamlab/") and n.endswith(".py") and "__pycache__" not in n for n in names)
        assert zf.read("streamlab/lake.py") == (deps.PACKAGE / "lake.py").read_bytes()
        assert {i.date_time for i in zf.infolist()} == {deps.ZIP_DATE}
    assert deps.archive_digest(a) == deps.sources_digest()


def test_archive_is_repacked_when_a_source_changes_and_never_runs_stale(tmp_path):
    package = _copy_package(tmp_path / "src")
    archive = tmp_path / "deps" / "python" / "streamlab.zip"
    with pytest.raises(deps.PythonArchiveError, match=r"streamlab.zip is missing: run `make deps`"):
        deps.ensure_python_archive(archive, package)
    assert deps.build_python_archive(archive, package) is True
    before = archive.stat().st_mtime_ns
    assert deps.build_python_archive(archive, package) is False  # unchanged: not rewritten
    assert deps.ensure_python_archive(archive, package) == archive
    assert archive.stat().st_mtime_ns == before

    # An edit (or a `git pull`) since `make deps`: the next submit gets the new sources.
    (package / "lake.py").write_text((package / "lake.py").read_text() + "\n# edited after a git pull\n")
    (package / "new_module.py").write_text("X = 1\n")
    assert deps.archive_digest(archive) != deps.sources_digest(package)
    assert deps.ensure_python_archive(archive, package) == archive
    assert deps.archive_digest(archive) == deps.sources_digest(package)
    with zipfile.ZipFile(archive) as zf:
        assert "streamlab/new_module.py" in zf.namelist()
        assert zf.read("streamlab/lake.py").endswith(b"# edited after a git pull\n")
    assert not [p.name for p in archive.parent.iterdir() if p.name != "streamlab.zip"]  # no leftovers


def test_make_deps_places_the_archive_where_the_dags_look(tmp_path):
    env = dict(os.environ, STREAMLAB_DEPS=str(tmp_path / "deps"))
    proc = subprocess.run(
        [sys.executable, "-m", "streamlab.deps", "--python-archive"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    code = "from streamlab import deps; p = deps.python_archive(); print(p, deps.archive_digest(p))"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    archive = tmp_path / "deps" / "python" / "streamlab.zip"
    assert out.stdout.split() == [str(archive), deps.sources_digest()], out.stderr


def test_the_spark_jobs_import_streamlab_from_the_archive_alone(tmp_path):
    """As spark-submit runs a job: the script's folder first, then --py-files (before the
    environment's PYTHONPATH). Every `streamlab` module a job imports must come out of the
    archive: once the package is loaded from it, its submodules are looked up there only."""
    archive = tmp_path / "streamlab.zip"
    deps.build_python_archive(archive)
    code = (
        "import sys, kafka_to_hdfs_landing, batch_wordcount, wordcount_stream\n"
        "for name, mod in sorted(sys.modules.items()):\n"
        "    if name == 'streamlab' or name.startswith('streamlab.'): print(name, mod.__file__)\n"
    )
    env = dict(os.environ, PYTHONPATH=f"{REPO / 'spark_jobs'}{os.pathsep}{archive}")
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    loaded = dict(line.split(" ", 1) for line in proc.stdout.splitlines())
    assert {"streamlab.landing", "streamlab.lake", "streamlab.textproc", "streamlab.topics"} <= set(loaded)
    assert all(path.startswith(str(archive) + os.sep) for path in loaded.values()), loaded


def test_no_import_fallbacks_in_the_code_spark_runs():
    """Jobs and the package import `streamlab.*` only (prereqs.py checks the venv: its one is legit)."""
    files = [*REPO.glob("spark_jobs/*.py"), *REPO.glob("dags/*.py"), *deps.source_files()]
    offenders = [
        str(f.relative_to(REPO))
        for f in files
        if f.name != "prereqs.py" and re.search(r"except\s+\(?[\w, ]*ImportError", f.read_text())
    ]
    assert offenders == []
