"""Starting, checking and stopping the stack's services, whatever they are (registry.py lists them)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import time

from streamlab import deps
from streamlab.config import HOST, StackConfig
from streamlab.stack import platform_dags, processes, registry
from streamlab.stack.java import java_binary
from streamlab.stack.service import Health, Service, StackError, as_user, say, tail

JAR_GROUPS = ("kafka", "hadoop", "spark-kafka", "streamlab")


def check_deps(cfg: StackConfig) -> None:
    """The jars `make deps` resolves, and the package archive the Spark jobs get (repacked here
    when the checkout changed: milliseconds)."""
    for group in JAR_GROUPS:
        if not list(cfg.jars(group).glob("*.jar")):
            raise StackError(
                f"No jars in {cfg.jars(group)}: run `make deps` (or `make up`, which installs them)."
            )
    try:
        deps.build_python_archive(cfg.deps / "python" / deps.PYTHON_ARCHIVE)
    except OSError as exc:
        raise StackError(f"could not pack the Spark jobs' package archive ({exc}): run `make deps`") from None


def write_configs(cfg: StackConfig) -> None:
    for folder in (cfg.conf_dir, cfg.log_dir, cfg.run_dir, cfg.airflow_home):
        folder.mkdir(parents=True, exist_ok=True)
    for write_config in registry.hooks("write_config"):
        write_config(cfg)


def format_storage(cfg: StackConfig, java: str) -> None:
    for format_once in registry.hooks("format_storage"):
        format_once(cfg, java)


def check_ports(cfg: StackConfig, services: list[Service]) -> None:
    described = registry.port_defaults()
    taken = []
    for svc in services:
        for key in svc.ports:
            port = cfg.ports[key]
            if not processes.port_free(port):
                owner = processes.port_owner(port) or "an unknown process"
                taken.append(
                    f"  port {port} ({described[key][1]}, needed by {svc.name}) is in use by "
                    f"{owner}.\n    Stop it, or choose another port: STREAMLAB_PORT_{key.upper()}=<port>"
                )
    if taken:
        raise StackError("Cannot start: ports already taken:\n" + "\n".join(taken))


def health_all(cfg: StackConfig) -> dict[str, Health]:
    return {svc.name: svc.health(cfg) for svc in registry.services(cfg)}


def up(cfg: StackConfig, timeout: float) -> None:
    started_at = time.monotonic()
    svcs = registry.services(cfg)
    if all(processes.running_pid(cfg, s.name) for s in svcs) and all(
        ok for ok, _ in health_all(cfg).values()
    ):
        say(f"already up (checked in {time.monotonic() - started_at:.1f} s)")
        # Client configs (spark-defaults: the jars) follow an updated checkout without a restart.
        check_deps(cfg)
        write_configs(cfg)
        if os.environ.get("STREAMLAB_START_DAGS", "1") != "0":
            platform_dags.start(cfg, provision=False)
        print_summary(cfg)
        return

    java = java_binary()
    check_deps(cfg)
    for check_state in registry.hooks("check_state"):
        check_state(cfg)  # before anything is written
    cfg.save()
    cfg.secrets(create=True)
    write_configs(cfg)
    to_start = [s for s in svcs if not processes.running_pid(cfg, s.name)]
    # A running service whose dependency starts again lost its connections (Airflow without
    # PostgreSQL: some of its processes exit on it, later): it starts afresh too.
    restarting = {s.name for s in to_start}
    dependents = [
        s
        for s in svcs
        if s.name not in restarting and restarting & set(s.needs) and processes.running_pid(cfg, s.name)
    ]
    if dependents:
        say(f"{', '.join(sorted(restarting & {n for s in dependents for n in s.needs}))} was not running: "
            f"restarting {', '.join(s.name for s in dependents)}, which use it")  # fmt: skip
        stop_services(cfg, dependents)
        to_start = [s for s in svcs if not processes.running_pid(cfg, s.name)]
    check_ports(cfg, to_start)
    format_storage(cfg, java)

    prepared: set = set()
    for svc in to_start:  # in layer order
        if svc.needs:
            wait_healthy(cfg, deadline=started_at + timeout, names=list(svc.needs))
        if svc.prepare and svc.prepare not in prepared:
            svc.prepare(cfg)
            prepared.add(svc.prepare)
        start(cfg, svc, java)
    wait_healthy(cfg, deadline=started_at + timeout)
    say(f"all services healthy in {time.monotonic() - started_at:.1f} s")
    if os.environ.get("STREAMLAB_START_DAGS", "1") != "0":
        platform_dags.start(cfg)
    print_summary(cfg)


def start(cfg: StackConfig, svc: Service, java: str) -> int:
    if svc.before_start:
        svc.before_start(cfg)
    user = svc.run_as() if svc.run_as else None
    pid = processes.spawn(cfg, svc.name, svc.command(cfg, java), cfg.env(), as_user(user))
    say(f"started {svc.name} (pid {pid}, log {cfg.log_dir / (svc.name + '.log')})")
    return pid


def wait_healthy(cfg: StackConfig, deadline: float, names: list[str] | None = None) -> None:
    by_name = {s.name: s for s in registry.services(cfg)}
    pending = set(names or by_name)
    last: dict[str, str] = {}
    while pending:
        for name in sorted(pending):
            svc = by_name[name]
            if not processes.running_pid(cfg, name):
                log = cfg.log_dir / f"{name}.log"
                raise StackError(f"{name} exited during start-up. Last lines of {log}:\n{tail(log)}")
            ok, detail = svc.health(cfg)
            last[name] = detail
            if ok:
                pending.discard(name)
                say(f"{name} healthy: {detail}")
        if not pending:
            return
        if time.monotonic() > deadline:
            msgs = []
            for name in sorted(pending):
                log = cfg.log_dir / f"{name}.log"
                msgs.append(
                    f"{name} did not become healthy in time (last check: {last.get(name)}).\n"
                    f"Last lines of {log}:\n{tail(log)}"
                )
            raise StackError(
                "\n\n".join(msgs) + "\n\nThe other services keep running; `make down` stops them."
            )
        time.sleep(1)


def print_summary(cfg: StackConfig) -> None:
    user = "admin"
    creds = f"user `{user}`, password in {cfg.admin_password_file}"
    try:
        user, password = cfg.admin_credentials()
        creds = f"user `{user}`, password `{password}` (kept in {cfg.admin_password_file})"
    except (OSError, ValueError, StopIteration):
        pass
    spark = (
        f"\n  Spark master           {cfg.spark_master_url}   UI http://{HOST}:{cfg.ports['spark_master_ui']}"
        if cfg.cluster
        else ""
    )
    print(
        f"""
  Airflow UI / REST API  {cfg.airflow_url}      ({creds})
  Kafka bootstrap        {cfg.kafka_bootstrap}
  HDFS                   {cfg.hdfs_uri}   WebHDFS / NameNode UI {cfg.webhdfs_url}{spark}
  State and logs         {cfg.home}
  Clients                bin/kafka-topics.sh, bin/kafka-console-producer.sh,
                         bin/kafka-console-consumer.sh, bin/hdfs dfs, bin/spark-submit, bin/airflow
""",
        flush=True,
    )


def down(cfg: StackConfig) -> None:
    marker = str(cfg.home)
    svcs = registry.services(cfg)
    stop_services(cfg, svcs)
    for svc in svcs:
        processes.pid_file(cfg, svc.name).unlink(missing_ok=True)
    # Services of an earlier version of the stack (e.g. its second Airflow api-server).
    for pid_file in sorted(cfg.run_dir.glob("*.pid")):
        pid = processes.running_pid(cfg, pid_file.stem)
        if pid:
            say(f"stopping {pid_file.stem} (pid {pid}), a service of an earlier version of the stack")
            processes.signal_group(pid, signal.SIGTERM)
            processes.wait_gone([pid], 20)
            processes.signal_group(pid, signal.SIGKILL)
        pid_file.unlink(missing_ok=True)
    # Whatever was re-parented away from the services (e.g. a Spark driver whose task died).
    leftovers = processes.stack_pids(marker)
    if leftovers:
        say(f"stopping {len(leftovers)} leftover process(es) of this stack: {leftovers}")
        for pid in leftovers:
            processes.signal_group(pid, signal.SIGTERM)
        processes.wait_gone(leftovers, 10)
        for pid in processes.stack_pids(marker):
            processes.signal_group(pid, signal.SIGKILL)
        processes.wait_gone(leftovers, 5)
    say("stack stopped")


def stop_services(cfg: StackConfig, svcs: list[Service]) -> None:
    """Stop these services, layer by layer from the top, each with its whole process tree."""
    for layer in sorted({s.layer for s in svcs}, reverse=True):
        group = [(s, processes.running_pid(cfg, s.name)) for s in svcs if s.layer == layer]
        group = [(s, pid) for s, pid in group if pid]
        trees = {}
        for svc, pid in group:
            trees[pid] = [pid, *processes.descendants([pid])]
            say(f"stopping {svc.name} (pid {pid})")
            if svc.signal_group:
                processes.signal_group(pid, svc.stop_signal)
            else:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, svc.stop_signal)
        if group:
            processes.wait_gone([pid for _, pid in group], max(s.stop_timeout for s, _ in group))
        for svc, pid in group:
            # Children that left the group (or ignored the signal) go too.
            survivors = [p for p in trees[pid] + processes.descendants(trees[pid]) if processes.alive(p)]
            if survivors and not processes.alive(pid):
                processes.wait_gone(survivors, 5)  # the main process is gone: its children follow it
                survivors = [p for p in survivors if processes.alive(p)]
            if survivors:
                if processes.alive(pid):
                    say(f"{svc.name} did not stop in {svc.stop_timeout:.0f} s: killing it")
                processes.signal_group(pid, signal.SIGKILL)
                for p in survivors:
                    processes.signal_group(p, signal.SIGKILL)
                processes.wait_gone(survivors, 5)


def status(cfg: StackConfig) -> bool:
    all_ok = True
    print(f"stack in {cfg.home}")
    for svc in registry.services(cfg):
        pid = processes.running_pid(cfg, svc.name)
        ok, detail = svc.health(cfg) if pid else (False, "not running")
        all_ok &= ok
        ports = ", ".join(str(cfg.ports[k]) for k in svc.ports) or "-"
        print(
            f"  {svc.name:22} {'healthy' if ok else 'DOWN':8} pid {pid or '-':<8} ports {ports:18} {detail}"
        )
    return all_ok


def clean(cfg: StackConfig) -> None:
    down(cfg)
    if cfg.home.exists():
        shutil.rmtree(cfg.home)
        say(f"removed {cfg.home}")
