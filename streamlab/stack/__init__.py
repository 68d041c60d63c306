"""The local stack: real Kafka (KRaft), HDFS (NameNode + DataNode), PostgreSQL and Airflow 3, as processes.

    python -m streamlab.stack up      # install-free start; idempotent; waits on health checks
    python -m streamlab.stack status  # health of every service
    python -m streamlab.stack down    # graceful stop, then forceful; no orphan JVM
    python -m streamlab.stack clean   # down, then wipe the state folder
    python -m streamlab.stack env     # shell exports to run clients against the stack

One module per service (kafka.py, namenode.py, datanode.py, postgres.py, spark_master.py,
spark_worker.py, one per Airflow process) declares its ports, config files, one-time formatting,
command, health check and layer (service.py says how); registry.py lists them; lifecycle.py starts
and stops whatever is listed; processes.py holds the pid files and process trees.

Each server runs in its own process group with a pid file in `<home>/run` and a log in
`<home>/log`. All state lives under one folder (`StackConfig.home`, `var/` by default);
configuration files are regenerated on every `up` from `StackConfig`, storage is formatted once.
"""
