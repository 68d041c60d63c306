"""`python -m streamlab.stack <command>`: what the Makefile's up, down, status, clean, stream-* run."""

from __future__ import annotations

import argparse
import os
import sys

from streamlab.config import REPO, StackConfig
from streamlab.stack import __doc__ as DOC
from streamlab.stack import lifecycle, platform_dags
from streamlab.stack.service import StackError


def shell_env(cfg: StackConfig) -> str:
    keep = cfg.env(base={})
    # The lab calls `kafka-topics.sh` without a folder (it put Kafka's bin/ on PATH).
    keep["PATH"] = f"{REPO / 'bin'}:{cfg.venv_bin}:{os.environ.get('PATH', '')}"
    return "\n".join(f"export {k}={_shquote(v)}" for k, v in sorted(keep.items()))


def _shquote(v: str) -> str:
    return "'" + v.replace("'", "'\"'\"'") + "'"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m streamlab.stack", description=DOC.split("\n")[0])
    parser.add_argument(
        "command", choices=["up", "down", "status", "clean", "env", "stream-stop", "stream-start"]
    )
    parser.add_argument("--timeout", type=float, default=float(os.environ.get("STREAMLAB_UP_TIMEOUT", 240)),
                        help="seconds to wait for all services to become healthy")  # fmt: skip
    args = parser.parse_args(argv)
    cfg = StackConfig.load()
    try:
        if args.command == "up":
            lifecycle.up(cfg, args.timeout)
        elif args.command == "down":
            lifecycle.down(cfg)
        elif args.command == "status":
            return 0 if lifecycle.status(cfg) else 1
        elif args.command == "clean":
            lifecycle.clean(cfg)
        elif args.command == "env":
            print(shell_env(cfg))
        else:
            platform_dags.stream(cfg, args.command.removeprefix("stream-"))
    except StackError as exc:
        print(f"\n[streamlab] ERROR: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\n[streamlab] interrupted; run the same command again to resume.", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
