"""What `make up` says and does on a machine without the system packages."""

from __future__ import annotations

import subprocess

import pytest

from streamlab import prereqs


@pytest.fixture
def bare(monkeypatch, tmp_path):
    """A machine with python3 only: no java, mvn, krb5-config, cc, headers."""
    monkeypatch.setattr(
        prereqs.shutil, "which", lambda name: "/usr/bin/apt-get" if name == "apt-get" else None
    )
    monkeypatch.setattr(prereqs, "_java_tool", lambda name: None)
    monkeypatch.setattr(prereqs, "python_headers", lambda: tmp_path / "Python.h")
    monkeypatch.setattr(prereqs, "debian_python", lambda: True)
    monkeypatch.setattr(prereqs, "Path", lambda p: tmp_path / "no" / p.lstrip("/"))
    return monkeypatch


def test_a_bare_debian_machine_needs_these_packages(bare):
    import sys

    packages = [m.package for m in prereqs.missing()]
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert packages == [
        "openjdk-17-jdk-headless", "maven", "libkrb5-dev", "gcc", "libc6-dev", f"python{version}-dev",
    ]  # fmt: skip


def test_a_non_root_user_gets_the_one_command_and_nothing_runs(bare, capsys):
    ran = []
    bare.setattr(prereqs.os, "geteuid", lambda: 1000)
    bare.setattr(prereqs.subprocess, "run", lambda *a, **k: ran.append(a))
    assert prereqs.main([]) == 1
    err = capsys.readouterr().err
    assert "needs root" in err
    assert (
        "sudo apt-get update && sudo apt-get install -y --no-install-recommends openjdk-17-jdk-headless maven"
        in err
    )
    assert ran == []


def test_apt_unreachable_is_a_clear_error(bare, capsys):
    bare.setattr(prereqs.os, "geteuid", lambda: 0)

    def fake_run(cmd, **kwargs):
        assert cmd[:2] == ["apt-get", "update"], cmd  # install is never tried
        return subprocess.CompletedProcess(
            cmd, 100, "", "Err:1 http://deb.debian.org/debian bookworm InRelease\n"
            "  Temporary failure resolving 'deb.debian.org'\nE: Some index files failed to download.\n",
        )  # fmt: skip

    bare.setattr(prereqs.subprocess, "run", fake_run)
    assert prereqs.main([]) == 1
    err = capsys.readouterr().err
    assert "apt-get update failed: the package mirrors could not be reached" in err
    assert "Err:1 http://deb.debian.org/debian bookworm InRelease" in err
    assert "install these yourself: openjdk-17-jdk-headless maven libkrb5-dev" in err


def test_as_root_it_installs_them_and_checks_again(bare, capsys):
    calls = []
    bare.setattr(prereqs.os, "geteuid", lambda: 0)

    def fake_run(cmd, **kwargs):
        calls.append(cmd)
        if cmd[:2] == ["apt-get", "install"]:
            bare.setattr(prereqs, "missing", lambda tests=False: [])  # the packages are there now
        return subprocess.CompletedProcess(cmd, 0, "", "")

    bare.setattr(prereqs.subprocess, "run", fake_run)
    assert prereqs.main([]) == 0
    assert calls[0][:2] == ["apt-get", "update"]
    assert calls[1][:5] == ["apt-get", "install", "-y", "-q", "--no-install-recommends"]
    assert "libkrb5-dev" in calls[1]
    assert "system packages installed" in capsys.readouterr().out


def test_the_tests_also_need_a_browser(bare, monkeypatch):
    monkeypatch.delenv("STREAMLAB_CHROMIUM", raising=False)
    assert [m.package for m in prereqs.missing(tests=True)][0] == "chromium"
    assert "chromium" not in [m.package for m in prereqs.missing()]  # `make up` does not install it


def test_this_machine_passes_after_make_deps():
    # `make test` runs `make test-prereqs` first, which installs whatever was missing.
    assert prereqs.missing(tests=True) == []
