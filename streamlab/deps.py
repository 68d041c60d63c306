"""Resolve the JVM side (Kafka, Hadoop, Spark's Kafka connector) from Maven into `.deps/jars/`.

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

from streamlab.config import REPO, StackConfig

GROUPS = ("kafka", "hadoop", "spark-kafka")


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
            if re.search(r"Could not (transfer|resolve)|UnknownHost|Connection refused|timed out|Connect to", out):
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


if __name__ == "__main__":
    ensure(StackConfig.load())
    sys.exit(0)
