"""Resolve the JVM side (Kafka, Hadoop, Spark's Kafka connector) from Maven into `.deps/jars/`,
compile the project's own Java (jvm/src: the landing's Parquet writer) into
`.deps/jars/streamlab/streamlab-jvm.jar` against the pinned pyspark's jars, and pack the
`streamlab` package into `.deps/python/streamlab.zip`, the one `--py-files` of every Spark job.

    python -m streamlab.deps                     # all of it (`make deps`, `make up`)
    python -m streamlab.deps --python-archive    # only the archive (the Dockerfile)
    python -m streamlab.deps --bench             # what only the benches need (`make bench-deps`):
                                                 # Kafka Streams and the streaming bench's peer

The archive holds the package's .py files only, with fixed dates and modes: the same sources
give the same bytes. Its zip comment is the SHA-256 of those sources: `make deps` repacks it
whenever the checkout's sources differ (a `git pull`, an edit), and so does
`ensure_python_archive()`, which the Spark DAGs run before each submit, so a job never runs
other code than the checkout's. A missing archive is an error naming `make deps`.

Each group gets its own folder because their jackson / slf4j / log4j versions differ. The
Spark connector version is read from the pyspark pin in requirements.txt, so it always matches
the Spark that runs it. A stamp per group (hash of pom.xml + that version) makes reruns free.
Extra Maven arguments (a corporate mirror, a proxy) go in STREAMLAB_MAVEN_ARGS, e.g.
`STREAMLAB_MAVEN_ARGS="-s ~/mirror-settings.xml" make up`.
"""

from __future__ import annotations

import argparse
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
BENCH_GROUPS = ("kafka-streams",)
PACKAGE = REPO / "streamlab"
PYTHON_ARCHIVE = "streamlab.zip"
ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # the earliest date a zip can hold: no build time in the bytes
JAVA_SOURCES = REPO / "jvm" / "src" / "main" / "java"
PROJECT_JAR = "streamlab-jvm.jar"
PEER_SOURCES = REPO / "bench" / "kafka_streams"
PEER_JAR = "kafka-streams-wordcount.jar"


def pinned_spark_version() -> str:
    text = (REPO / "requirements.txt").read_text()
    match = re.search(r"^pyspark==([\w.]+)", text, re.M)
    if not match:
        raise SystemExit("requirements.txt has no `pyspark==X.Y.Z` pin")
    return match.group(1)


def _stamp(group: str, spark_version: str) -> str:
    pom = (REPO / "jvm" / "pom.xml").read_bytes()
    return hashlib.sha256(pom + group.encode() + spark_version.encode()).hexdigest()


def ensure(cfg: StackConfig, groups: tuple[str, ...] = GROUPS) -> None:
    spark_version = pinned_spark_version()
    for group in groups:
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
    classpath = [os.path.join(pyspark_jars(), "*"), str(cfg.jars("spark-kafka") / "*")]
    compile_jar(JAVA_SOURCES, classpath, cfg.jars("streamlab") / PROJECT_JAR, pinned_spark_version())


def build_bench_peer(cfg: StackConfig) -> Path:
    """The Kafka Streams word count of bench/kafka_streams (resolving Kafka Streams first);
    returns its jar. `bench_peer_classpath` is what it runs with."""
    ensure(cfg, BENCH_GROUPS)
    jar = cfg.jars("bench-peer") / PEER_JAR
    key = _stamp("kafka-streams", "") + pinned_spark_version()
    compile_jar(PEER_SOURCES, bench_peer_classpath(cfg)[1:], jar, key)
    return jar


def bench_peer_classpath(cfg: StackConfig) -> list[str]:
    """The peer's jar, Kafka Streams, and pyspark's ICU4J: the case mapping Spark's lower() uses."""
    icu = sorted(Path(pyspark_jars()).glob("icu4j-*.jar"))
    if not icu:
        raise SystemExit(f"no icu4j jar in {pyspark_jars()}: is the pyspark of requirements.txt installed?")
    return [str(cfg.jars("bench-peer") / PEER_JAR), str(cfg.jars("kafka-streams") / "*"), str(icu[-1])]


def compile_jar(sources_root: Path, classpath: list[str], jar_path: Path, key: str) -> None:
    """javac + zip of the .java files under `sources_root` into `jar_path`; skipped when the
    sources and `key` (what else the classes depend on: a pin) are those of the last build."""
    sources = sorted(sources_root.rglob("*.java"))
    digest = hashlib.sha256(key.encode())
    for src in sources:
        digest.update(str(src.relative_to(sources_root)).encode() + src.read_bytes())
    target = jar_path.parent
    stamp_file = target / ".stamp"
    if jar_path.exists() and stamp_file.exists() and stamp_file.read_text() == digest.hexdigest():
        return
    print(f"[streamlab] compiling {sources_root.relative_to(REPO)} into {jar_path}", flush=True)
    classes = Path(tempfile.mkdtemp(prefix="streamlab-javac-"))
    try:
        cmd = [javac_binary(), "--release", "17", "-nowarn", "-Xlint:none", "-d", str(classes),
               "-cp", os.pathsep.join(classpath), *map(str, sources)]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"[streamlab] javac failed:\n{(proc.stdout + proc.stderr)[-3000:]}")
        target.mkdir(parents=True, exist_ok=True)
        tmp = jar_path.with_name(jar_path.name + ".partial")
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as jar:
            jar.writestr("META-INF/MANIFEST.MF", "Manifest-Version: 1.0\nCreated-By: streamlab.deps\n")
            for f in sorted(classes.rglob("*.class")):
                jar.write(f, str(f.relative_to(classes)))
        tmp.replace(jar_path)  # atomic: a half-written jar is never on a classpath
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


# ---- the Python side: one archive of the `streamlab` package for spark-submit --py-files ------


class PythonArchiveError(RuntimeError):
    """The package archive is missing or does not match the sources of this checkout."""


def python_archive() -> Path:
    """Where the archive is: `$STREAMLAB_DEPS/python/streamlab.zip`, else `.deps/` beside the
    package (the repository locally, /opt/airflow in the compose image). No I/O: DAG files call
    it while being parsed."""
    deps = Path(os.environ.get("STREAMLAB_DEPS") or REPO / ".deps")
    return deps.resolve() / "python" / PYTHON_ARCHIVE


def source_files(package: Path = PACKAGE) -> list[Path]:
    return sorted(p for p in package.rglob("*.py") if "__pycache__" not in p.parts)


def sources_digest(package: Path = PACKAGE) -> str:
    digest = hashlib.sha256()
    for src in source_files(package):
        digest.update(src.relative_to(package).as_posix().encode() + b"\0" + src.read_bytes() + b"\0")
    return digest.hexdigest()


def archive_digest(path: Path) -> str | None:
    """The sources digest recorded in an archive (its zip comment), None if unreadable."""
    try:
        with zipfile.ZipFile(path) as zf:
            return zf.comment.decode() or None
    except (OSError, zipfile.BadZipFile, UnicodeDecodeError):
        return None


def build_python_archive(target: Path | None = None, package: Path = PACKAGE) -> bool:
    """Write the archive unless it already holds exactly these sources; True if (re)written."""
    target = target or python_archive()
    digest = sources_digest(package)
    if archive_digest(target) == digest:
        return False
    print(f"[streamlab] packing {package.name}/ into {target}", flush=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.partial")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as zf:
        for src in source_files(package):
            info = zipfile.ZipInfo(f"{package.name}/{src.relative_to(package).as_posix()}", ZIP_DATE)
            info.external_attr = 0o644 << 16
            zf.writestr(info, src.read_bytes())
        zf.comment = digest.encode()
    tmp.replace(target)  # atomic: a job never reads a half-written archive
    return True


def ensure_python_archive(path: Path | None = None, package: Path = PACKAGE) -> Path:
    """The archive, repacked first if the sources changed since it was packed (a job never
    runs a stale copy). Missing (`make deps` never ran) or impossible to repack here:
    PythonArchiveError naming the fix. Run before each spark-submit (the DAGs' `pre_execute`)."""
    path = path or python_archive()
    fix = "run `make deps` (compose: `docker compose up -d --build`)"
    if not path.is_file():
        raise PythonArchiveError(f"the Spark jobs' package archive {path} is missing: {fix}")
    try:
        build_python_archive(path, package)
    except OSError as err:
        raise PythonArchiveError(
            f"the Spark jobs' package archive {path} does not match the sources in {package} "
            f"and cannot be repacked here ({err}): {fix}"
        ) from err
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m streamlab.deps", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--python-archive", action="store_true", help="only pack the streamlab package (no Maven, no JDK)"
    )
    parser.add_argument(
        "--bench", action="store_true", help="only what the benches add: Kafka Streams and its word count"
    )
    args = parser.parse_args(argv)
    if args.bench:
        build_bench_peer(StackConfig.load())
        return 0
    if not args.python_archive:
        cfg = StackConfig.load()
        ensure(cfg)
        build_project_jar(cfg)
        make_kafka_home(cfg)
    build_python_archive()
    return 0


if __name__ == "__main__":
    sys.exit(main())
