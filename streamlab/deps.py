"""Resolve the JVM side (Kafka, Hadoop, Spark's Kafka connector) from Maven into `.deps/jars/`,
and compile the project's own Java (jvm/src: the landing's Parquet writer) into
`.deps/jars/streamlab/streamlab-jvm.jar` against the pinned pyspark's jars.

    python -m streamlab.deps

Each group gets its own folder because their jackson / slf4j / log4j versions differ. The
Spark connector version is read from the pyspark pin in requirements.txt, so it always matches
the Spark that runs it. A stamp per group (hash of pom.xml + that version) makes reruns free.
Extra Maven arguments (a corporate mirror, a proxy) go in STREAMLAB_MAVEN_ARGS, e.g.
`STREAMLAB_MAVEN_ARGS="-s ~/mirror-settings.xml" make up`.
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from streamlab.config import REPO, StackConfig

GROUPS = ("kafka", "hadoop", "spark-kafka")
JAVA_SOURCES = REPO / "jvm" / "src" / "main" / "java"
PROJECT_JAR = "streamlab-jvm.jar"


def pinned_spark_version() -> str:
    text = (REPO / "requirements.txt").read_text()
    match = re.search(r"^pyspark==([\w.]+)", text, re.M)
    if not match:
        raise SystemExit("requirements.txt has no `pyspark==X.Y.Z` pin")
    return match.group(1)


def _stamp(group: str, spark_version: str) -> str:
    pom = (REPO / "jvm" / "pom.xml").read_bytes()
    return hashlib.sha256(pom + group.encode() + spark_version.encode()).hexdigest()


def ensure(cfg: StackConfig) -> None:
    spark_version = pinned_spark_version()
    for group in GROUPS:
        target = cfg.jars(group)
        stamp_file = target / ".stamp"
        stamp = _stamp(group, spark_version)
        if stamp_file.exists() and stamp_file.read_text() == stamp:
            continue
        mvn = shutil.which("mvn")
        if not mvn:
            raise SystemExit(
                "Maven (`mvn`) is needed once to fetch the Kafka, Hadoop and Spark-connector jars. "
                "Install it (Debian/Ubuntu: `apt-get install maven`) and run `make up` again."
            )
        print(f"[streamlab] resolving {group} jars from Maven into {target}", flush=True)
        tmp = target.with_name(target.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        cmd = [
            mvn, "-B", "-ntp", "-f", str(REPO / "jvm" / "pom.xml"), "-P", group,
            "dependency:copy-dependencies", "-DincludeScope=runtime",
            f"-DoutputDirectory={tmp}", f"-Dspark.version={spark_version}",
            *shlex.split(os.environ.get("STREAMLAB_MAVEN_ARGS", "")),
        ]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            out = proc.stdout + proc.stderr
            hint = ""
            if re.search(
                r"Could not (transfer|resolve)|UnknownHost|Connection refused|timed out|Connect to", out
            ):
                hint = (
                    "\nMaven could not reach its repository. Check the network, a proxy, or a "
                    "mirror in ~/.m2/settings.xml, then run `make up` again."
                )
            errors = "\n".join(line for line in out.splitlines() if "[ERROR]" in line)[-3000:]
            raise SystemExit(f"[streamlab] Maven failed for {group} jars:\n{errors}{hint}")
        # Swap in whole, so an interrupted download never leaves a half classpath.
        shutil.rmtree(target, ignore_errors=True)
        tmp.rename(target)
        stamp_file.write_text(stamp)
        print(f"[streamlab]   {len(list(target.glob('*.jar')))} jars", flush=True)


def javac_binary() -> str:
    java_home = os.environ.get("JAVA_HOME")
    javac = os.path.join(java_home, "bin", "javac") if java_home else shutil.which("javac")
    if not javac or not os.access(javac, os.X_OK):
        raise SystemExit(
            "A JDK is needed to compile jvm/src (no `javac`"
            + (f" in JAVA_HOME={java_home}" if java_home else " on PATH")
            + "; a JRE is not enough). Debian/Ubuntu: `apt-get install openjdk-17-jdk-headless`."
        )
    return javac


def pyspark_jars() -> str:
    import pyspark  # the venv's, pinned in requirements.txt

    return os.path.join(os.path.dirname(pyspark.__file__), "jars")


def build_project_jar(cfg: StackConfig) -> None:
    """javac + zip of jvm/src, rebuilt when a source or the Spark pin changes."""
    spark_version = pinned_spark_version()
    sources = sorted(JAVA_SOURCES.rglob("*.java"))
    digest = hashlib.sha256(spark_version.encode())
    for src in sources:
        digest.update(str(src.relative_to(JAVA_SOURCES)).encode() + src.read_bytes())
    target = cfg.jars("streamlab")
    stamp_file = target / ".stamp"
    if stamp_file.exists() and stamp_file.read_text() == digest.hexdigest():
        return
    print(f"[streamlab] compiling jvm/src into {target / PROJECT_JAR}", flush=True)
    classes = Path(tempfile.mkdtemp(prefix="streamlab-javac-"))
    try:
        classpath = os.pathsep.join([os.path.join(pyspark_jars(), "*"), str(cfg.jars("spark-kafka") / "*")])
        cmd = [javac_binary(), "--release", "17", "-nowarn", "-Xlint:none", "-d", str(classes),
               "-cp", classpath, *map(str, sources)]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"[streamlab] javac failed:\n{(proc.stdout + proc.stderr)[-3000:]}")
        target.mkdir(parents=True, exist_ok=True)
        tmp = target / (PROJECT_JAR + ".partial")
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as jar:
            jar.writestr("META-INF/MANIFEST.MF", "Manifest-Version: 1.0\nCreated-By: streamlab.deps\n")
            for f in sorted(classes.rglob("*.class")):
                jar.write(f, str(f.relative_to(classes)))
        tmp.replace(target / PROJECT_JAR)  # atomic: a half-written jar is never on a classpath
        stamp_file.write_text(digest.hexdigest())
    finally:
        shutil.rmtree(classes, ignore_errors=True)


def make_kafka_home(cfg: StackConfig) -> None:
    """`$KAFKA_HOME` as the lab knows it: `libs/` (the Kafka jars, clients included, for
    `javac -cp "$KAFKA_HOME/libs/*"`) and `bin/` (the stack's wrappers of the Kafka tools)."""
    home = cfg.kafka_home
    home.mkdir(parents=True, exist_ok=True)
    for name, target in (("libs", cfg.jars("kafka")), ("bin", REPO / "bin")):
        link = home / name
        if link.is_symlink() and link.resolve() == target.resolve():
            continue
        tmp = home / f".{name}.tmp"
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(target, target_is_directory=True)
        tmp.replace(link)


if __name__ == "__main__":
    cfg = StackConfig.load()
    ensure(cfg)
    build_project_jar(cfg)
    make_kafka_home(cfg)
    sys.exit(0)
