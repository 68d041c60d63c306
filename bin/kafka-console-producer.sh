#!/usr/bin/env bash
# The lab's `kafka-console-producer.sh`, against the local stack: the real Kafka tool class.
# Kafka 4 removed `--broker-list`; the lab's lines use it, so it is passed on as --bootstrap-server.
source "$(dirname "${BASH_SOURCE[0]}")/_stack_env.sh"
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --broker-list)
      [ $# -ge 2 ] || { echo "--broker-list needs a value, e.g. --broker-list localhost:9092" >&2; exit 1; }
      echo "note: Kafka 4 has no --broker-list; using --bootstrap-server $2" >&2
      args+=(--bootstrap-server "$2"); shift 2 ;;
    --broker-list=*)
      echo "note: Kafka 4 has no --broker-list; using --bootstrap-server ${1#*=}" >&2
      args+=(--bootstrap-server "${1#*=}"); shift ;;
    *) args+=("$1"); shift ;;
  esac
done
kafka_tool org.apache.kafka.tools.ConsoleProducer "${args[@]}"
