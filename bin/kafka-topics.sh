#!/usr/bin/env bash
# The lab's `kafka-topics.sh`, against the local stack: the real Kafka tool class.
source "$(dirname "${BASH_SOURCE[0]}")/_stack_env.sh"
kafka_tool org.apache.kafka.tools.TopicCommand "$@"
