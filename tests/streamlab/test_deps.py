"""Maven that cannot reach its repository gives a clear message, not a stack trace."""

import os
import subprocess
import sys

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
