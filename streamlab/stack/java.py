"""The JVM every Java service runs on: found once, checked to be Java 17 or newer."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from streamlab.stack.service import StackError

# The servers' JVMs: the serial collector and a heap that starts small. G1 (the default) keeps
# its own threads and region tables and grows the heap towards -Xmx before it collects: on a
# single-node stack of small heaps that is RSS without a use, and its short pauses buy nothing.
SERVER_JVM_FLAGS = ("-XX:+UseSerialGC", "-Xms32m")


def java_binary() -> str:
    """The `java` to use (JAVA_HOME first), checked to be Java 17 or newer."""
    java_home = os.environ.get("JAVA_HOME")
    java = str(Path(java_home) / "bin" / "java") if java_home else shutil.which("java")
    if not java or not Path(java).exists():
        raise StackError(
            "Java was not found (no JAVA_HOME and no `java` on PATH). Kafka, HDFS and Spark need "
            "Java 17 or newer: install it (Debian/Ubuntu: `apt-get install openjdk-17-jdk-headless`) "
            "or set JAVA_HOME."
        )
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30).stderr
    except OSError as exc:
        raise StackError(f"Could not run {java}: {exc}") from None
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out)
    if not match:
        raise StackError(f"Could not read the Java version from `{java} -version`:\n{out}")
    major = int(match.group(1))
    if major == 1:  # "1.8.0_392" style
        major = int(match.group(2) or 0)
    if major < 17:
        raise StackError(
            f"{java} is Java {major}; Kafka 4, Hadoop 3.5 and Spark 4 need Java 17 or newer. "
            "Install a newer JDK and point JAVA_HOME at it."
        )
    return java
