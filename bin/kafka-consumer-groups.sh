#!/usr/bin/env bash
# The lab's `kafka-consumer-groups.sh`, against the local stack: the real Kafka tool class.
source "$(dirname "${BASH_SOURCE[0]}")/_stack_env.sh"
kafka_tool org.apache.kafka.tools.consumer.group.ConsumerGroupCommand "$@"
