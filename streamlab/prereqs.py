"""System prerequisites of `make up` / `make test`, checked before the virtualenv exists.

    python3 -m streamlab.prereqs            what `make up` needs
    python3 -m streamlab.prereqs --tests    and what only the tests need (a headless browser)

Standard library only: it runs with the machine's own python3. On Debian or Ubuntu, run as root,
it installs what is missing through apt (saying what and why); run as another user it stops and
prints the one command to run. Elsewhere it names what is missing.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

MIN_PYTHON = (3, 11)  # numpy 2.4 and pandas 2.3 (pinned in constraints.txt) need 3.11+
JAVA_MAJOR = 17


@dataclass(frozen=True)
class Missing:
    package: str  # Debian/Ubuntu package that provides it
    why: str


def java_major(java: str) -> int | None:
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30).stderr
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out)
    if not match:
        return None
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major


def _java_tool(name: str) -> str | None:
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / name).exists():
        return str(Path(java_home) / "bin" / name)
    return shutil.which(name)


def python_headers() -> Path:
    return Path(sysconfig.get_config_var("INCLUDEPY") or sysconfig.get_paths()["include"]) / "Python.h"


def debian_python() -> bool:
    """True when this interpreter is the distribution's (its -dev/-venv packages fit it)."""
    return os.path.realpath(sys.executable).startswith("/usr/bin/")


def missing(tests: bool = False) -> list[Missing]:
    found: list[Missing] = []
    if tests and not browser():
        found.append(Missing("chromium", "the UI test drives the Airflow UI in a real headless browser"))
    java, javac = _java_tool("java"), _java_tool("javac")
    major = java_major(java) if java else None
    if major is None or major < JAVA_MAJOR or not javac:
        have = f"found Java {major}" if major else "no java on PATH or in JAVA_HOME"
        found.append(
            Missing(
                f"openjdk-{JAVA_MAJOR}-jdk-headless",
                f"Kafka 4, Hadoop 3.5 and Spark 4 run on Java {JAVA_MAJOR}+; javac compiles the landing's writer ({have}"
                + ("" if javac or not java else ", no javac")
                + ")",
            )
        )
    if not shutil.which("mvn"):
        found.append(Missing("maven", "resolves the Kafka, Hadoop and Spark-connector jars once"))
    if not shutil.which("krb5-config"):
        found.append(Missing("libkrb5-dev", "the HDFS provider's gssapi and krb5 packages build against it"))
    if not (shutil.which("cc") or shutil.which("gcc")):
        found.append(Missing("gcc", "compiles the gssapi and krb5 packages (sources only on PyPI)"))
    if not Path("/usr/include/stdio.h").exists():
        found.append(Missing("libc6-dev", "C headers for those builds"))
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    if not python_headers().exists():
        if debian_python():
            found.append(Missing(f"python{version}-dev", f"Python.h, for those builds ({python_headers()})"))
        else:
            found.append(Missing("", f"Python.h of {sys.executable} ({python_headers()} is missing)"))
    try:
        import ensurepip  # noqa: F401
    except ImportError:
        found.append(Missing(f"python{version}-venv", "creates the project's .venv"))
    return found


def browser() -> str | None:
    """The Chromium the UI test launches (Playwright's own browser download is not reachable)."""
    return (
        os.environ.get("STREAMLAB_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    )


def say(msg: str) -> None:
    print(f"[streamlab] {msg}", flush=True)


def fail(msg: str) -> int:
    print(f"\n[streamlab] ERROR: {msg}", file=sys.stderr, flush=True)
    return 1


def apt_install(packages: list[str]) -> int:
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    say("apt-get update")
    update = subprocess.run(["apt-get", "update"], env=env, capture_output=True, text=True)
    errors = [
        ln for ln in (update.stdout + update.stderr).splitlines() if ln.startswith(("E:", "Err:", "W:"))
    ]
    if update.returncode != 0:
        return fail(
            "apt-get update failed: the package mirrors could not be reached.\n  "
            + "\n  ".join(errors[-6:])
            + "\nCheck the network, a proxy (Acquire::http::Proxy) or /etc/apt/sources.list, then run "
            f"the same command again; or install these yourself: {' '.join(packages)}"
        )
    if errors:  # it exits 0 when some mirrors failed: an install may then not find a package
        say("apt-get update reported problems:\n  " + "\n  ".join(errors[-6:]))
    cmd = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *packages]
    say(" ".join(cmd))
    if subprocess.run(cmd, env=env).returncode != 0:
        return fail(
            f"`{' '.join(cmd)}` failed (see its output above). Fix what apt reports, then run the same command again."
        )
    return 0


def main(argv: list[str] | None = None) -> int:
    tests = "--tests" in (sys.argv[1:] if argv is None else argv)
    if sys.version_info < MIN_PYTHON:
        return fail(
            f"{sys.executable} is Python {sys.version.split()[0]}; the pinned packages need Python "
            f"{'.'.join(map(str, MIN_PYTHON))} or newer. Point PYTHON at one: `make up PYTHON=python3.11`."
        )
    todo = missing(tests)
    if not todo:
        return 0
    unnamed = [m for m in todo if not m.package]
    if unnamed:
        return fail(
            "; ".join(m.why for m in unnamed)
            + ". Reinstall that Python with its development headers, or use the distribution's python3 "
            "(`make up PYTHON=/usr/bin/python3`)."
        )
    packages = [m.package for m in todo]
    say("system packages needed:")
    for m in todo:
        print(f"    {m.package:28} {m.why}", flush=True)
    command = f"apt-get install -y --no-install-recommends {' '.join(packages)}"
    if not shutil.which("apt-get"):
        return fail(
            "this machine has no apt-get: install the equivalents of the packages above with its "
            "package manager, then run the same command again."
        )
    if os.geteuid() != 0:
        return fail(
            f"installing them needs root. Run this once, then the same make command again:\n\n"
            f"    sudo apt-get update && sudo {command}\n"
        )
    rc = apt_install(packages)
    if rc:
        return rc
    still = [m.package for m in missing(tests)]
    if still:
        hint = ""
        if any(p.startswith("openjdk") for p in still) and os.environ.get("JAVA_HOME"):
            hint = (
                f" (JAVA_HOME={os.environ['JAVA_HOME']} is used first: point it at the new JDK or unset it)"
            )
        return fail(f"still missing after apt-get: {' '.join(still)}{hint}")
    say("system packages installed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
