"""What the bench scripts share: progress lines, and unwinding on a signal."""

from __future__ import annotations

import signal
import sys


def say(line: str) -> None:
    print(line, flush=True)


def stop_on_signals() -> None:
    """SIGTERM (and SIGINT, even when started in the background) unwind through the `finally`s,
    which stop what the bench started and delete what it created; a second signal cannot cut that
    clean-up short."""

    def stop(signum: int, _frame) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
