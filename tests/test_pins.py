"""pyproject.toml and the requirements files declare the same pins, and test tools stay out of
what the Airflow image installs (requirements.txt).

requirements.txt (runtime) and requirements-dev.txt (`-r requirements.txt` + test tools) are
what pip installs (`make venv`, the Dockerfile); pyproject.toml's `dependencies` and
`[dependency-groups] dev` must say exactly the same; constraints.txt must freeze every pin at
the same version.
"""

from __future__ import annotations

import re

import tomllib

from tests.conftest import REPO

_REQ = re.compile(r"([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?\s*==\s*([^\s;#]+)")


def _name(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(lines: list[str], where: str) -> tuple[dict[str, str], list[str]]:
    """name -> version of `name==version` entries; the other entries as problems."""
    found, problems = {}, []
    for raw in lines:
        line = raw.split("#")[0].strip()
        if not line or line.startswith("-r "):
            continue
        m = _REQ.fullmatch(line)
        if not m:
            problems.append(f"{where}: {line!r} is not an exact `name==version` pin")
            continue
        found[_name(m.group(1))] = m.group(2)
    return found, problems


def pin_problems(pyproject: str, runtime: str, dev: str, constraints: str) -> list[str]:
    project = tomllib.loads(pyproject)
    declared, problems = pins(project["project"]["dependencies"], "pyproject dependencies")
    declared_dev, more = pins(project["dependency-groups"]["dev"], "pyproject dev group")
    problems += more
    req, more = pins(runtime.splitlines(), "requirements.txt")
    problems += more
    req_dev, more = pins(dev.splitlines(), "requirements-dev.txt")
    problems += more
    frozen, _ = pins(constraints.splitlines(), "constraints.txt")

    if "-r requirements.txt" not in (line.strip() for line in dev.splitlines()):
        problems.append("requirements-dev.txt does not include `-r requirements.txt`")
    for a_name, a, b_name, b in (
        ("pyproject dependencies", declared, "requirements.txt", req),
        ("pyproject dev group", declared_dev, "requirements-dev.txt", req_dev),
    ):
        for name in sorted(a.keys() | b.keys()):
            if a.get(name) != b.get(name):
                problems.append(f"{name}: {a_name} {a.get(name)!r} != {b_name} {b.get(name)!r}")
    for name in sorted(req.keys() & req_dev.keys()):
        problems.append(f"{name}: pinned in both requirements.txt and requirements-dev.txt")
    for name, version in sorted({**req, **req_dev}.items()):
        if frozen.get(name) != version:
            problems.append(f"{name}: pinned {version}, constraints.txt has {frozen.get(name)!r}")
    return problems


def _files() -> tuple[str, str, str, str]:
    return tuple(
        (REPO / f).read_text(encoding="utf-8")
        for f in ("pyproject.toml", "requirements.txt", "requirements-dev.txt", "constraints.txt")
    )


def test_pyproject_and_requirements_declare_the_same_pins():
    assert pin_problems(*_files()) == []


def test_test_tools_are_not_runtime_requirements():
    """The Dockerfile installs requirements.txt: no test or lint tool may be in it."""
    pyproject, runtime, _, _ = _files()
    runtime_pins, _ = pins(runtime.splitlines(), "requirements.txt")
    dev = tomllib.loads(pyproject)["dependency-groups"]["dev"]
    assert {"pytest", "pytest-timeout", "ruff"} <= {_name(d.split("==")[0]) for d in dev}
    assert not {"pytest", "pytest-timeout", "ruff"} & runtime_pins.keys()


def test_the_check_catches_a_mismatch():
    pyproject, runtime, dev, constraints = _files()
    assert pin_problems(pyproject.replace('"pyspark==4.2.0"', '"pyspark==4.1.0"'), runtime, dev, constraints)
    assert pin_problems(pyproject, runtime + "ruff==0.17.5\n", dev, constraints)
    assert pin_problems(pyproject, runtime, dev.replace("ruff==0.17.5", "ruff==0.17.4"), constraints)
    assert pin_problems(pyproject, runtime, dev.replace("-r requirements.txt", ""), constraints)
    assert pin_problems(pyproject, runtime.replace("hdfs==2.7.3", "hdfs>=2.7"), dev, constraints)
    assert pin_problems(pyproject, runtime, dev, constraints.replace("psutil==7.2.2", "psutil==7.2.1"))
