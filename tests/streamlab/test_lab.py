"""streamlab.lab without a broker: output format, argument handling, delivery failure."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from streamlab import lab

REPO = Path(__file__).resolve().parents[2]


def test_record_line_is_the_labs_printf():
    assert lab.format_record(32, b"0", b"0") == "offset = 32, key = 0, value = 0"


def test_null_and_invalid_utf8_are_printed_not_fatal():
    assert lab.format_record(1, None, b"\xff\xfeok") == "offset = 1, key = null, value = \ufffd\ufffdok"


def test_default_bootstrap_is_a_host_and_port():
    host, _, port = lab.default_bootstrap().rpartition(":")
    assert host and port.isdigit()


def test_producer_reports_an_unreachable_broker():
    proc = subprocess.run(
        [sys.executable, "-m", "streamlab.lab", "producer",
         "--bootstrap-servers", "127.0.0.1:1", "--topic", "nowhere", "--timeout", "2"],
        capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(REPO)), cwd=REPO, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert "could not send to topic 'nowhere' at 127.0.0.1:1" in proc.stderr
