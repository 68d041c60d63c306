"""The lab's SimpleProducer and SimpleConsumer (Java, KafkaProducer/KafkaConsumer API) in Python.

    python -m streamlab.lab producer [--bootstrap-servers HOST:PORT] [--topic Hello-Kafka]
    python -m streamlab.lab consumer [--bootstrap-servers HOST:PORT] [--topic Hello-Kafka]
                                     [--group test] [--from-beginning]
                                     [--max-messages N] [--timeout S]

The producer sends the records key "0".."9" / value "0".."9" with acks=all, waits until the
broker acknowledged all of them and prints `Message sent successfully` (exit code 1 and the
reason on stderr if any record was not delivered). The consumer subscribes like the lab's
(group `test`, auto-commit every second, starts at the end of the topic unless
`--from-beginning`) and prints one `offset = N, key = K, value = V` line per record.

The default broker is the local stack's (streamlab.config), else 127.0.0.1:9092. Progress and
errors go to stderr, so stdout holds exactly the lab's lines.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

DEFAULT_TOPIC = "Hello-Kafka"
DEFAULT_GROUP = "test"  # the lab's group.id
FALLBACK_BOOTSTRAP = "127.0.0.1:9092"


def default_bootstrap() -> str:
    """The local stack's broker if its config can be read, else the lab's single broker."""
    try:
        from streamlab.config import StackConfig

        return StackConfig.load().kafka_bootstrap
    except Exception:
        return FALLBACK_BOOTSTRAP


def _text(data: bytes | None) -> str:
    # Java's StringDeserializer gives null for a null key/value; invalid UTF-8 is replaced.
    return "null" if data is None else data.decode("utf-8", errors="replace")


def format_record(offset: int, key: bytes | None, value: bytes | None) -> str:
    """The lab's `printf("offset = %d, key = %s, value = %s\\n", ...)` line (without newline)."""
    return f"offset = {offset}, key = {_text(key)}, value = {_text(value)}"


def run_producer(bootstrap: str, topic: str, count: int = 10, timeout: float = 30.0) -> int:
    """Send keys/values "0".."count-1" with acks=all; 0 when all were acknowledged."""
    from confluent_kafka import Producer

    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "acks": "all",  # as in the lab: the leader waits for all in-sync replicas
            # The lab sets retries=0; idempotence keeps librdkafka's retries without duplicates.
            "enable.idempotence": True,
            "batch.size": 16384,  # as in the lab
            "queue.buffering.max.kbytes": 32768,  # the lab's buffer.memory = 32 MiB
            "message.timeout.ms": int(timeout * 1000),  # give up on a record after this long
        }
    )
    failures: list[str] = []

    def on_delivery(err, msg) -> None:
        if err is not None:
            failures.append(f"key {_text(msg.key())}: {err.str()}")

    for i in range(count):
        producer.produce(topic, key=str(i).encode(), value=str(i).encode(), on_delivery=on_delivery)
    remaining = producer.flush(timeout + 5)
    if remaining:
        failures.append(f"{remaining} record(s) still unacknowledged after {timeout + 5:.0f} s")
    if failures:
        print(f"error: could not send to topic {topic!r} at {bootstrap}:", file=sys.stderr)
        for failure in failures:
            print(f"  {failure}", file=sys.stderr)
        return 1
    print("Message sent successfully", flush=True)
    return 0


def run_consumer(
    bootstrap: str,
    topic: str,
    group: str = DEFAULT_GROUP,
    *,
    from_beginning: bool = False,
    max_messages: int | None = None,
    timeout: float | None = None,
) -> int:
    """Print the records of `topic`; stop after `max_messages` or `timeout` seconds (else Ctrl-C).

    Returns 1 when `timeout` ends the run before `max_messages` records were read.
    """
    from confluent_kafka import Consumer, KafkaError

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "enable.auto.commit": True,
            "auto.commit.interval.ms": 1000,
            "session.timeout.ms": 30000,
            "auto.offset.reset": "earliest" if from_beginning else "latest",
        }
    )
    consumer.subscribe(
        [topic],
        on_assign=lambda _c, parts: print(f"assigned {len(parts)} partition(s)", file=sys.stderr, flush=True),
    )
    print(f"Subscribed to topic {topic}", flush=True)
    deadline = None if timeout is None else time.monotonic() + timeout
    seen = 0
    try:
        while max_messages is None or seen < max_messages:
            if deadline is not None and time.monotonic() >= deadline:
                if max_messages is not None:
                    print(
                        f"error: timed out after {timeout} s with {seen}/{max_messages} record(s)",
                        file=sys.stderr,
                    )
                    return 1
                return 0
            msg = consumer.poll(0.1)
            if msg is None:
                continue
            if msg.error():
                if msg.error().code() != KafkaError._PARTITION_EOF:
                    print(f"warning: {msg.error().str()}", file=sys.stderr, flush=True)
                continue
            print(format_record(msg.offset(), msg.key(), msg.value()), flush=True)
            seen += 1
        return 0
    except KeyboardInterrupt:
        return 0
    finally:
        consumer.close()  # commits the offsets read (auto-commit) and leaves the group


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m streamlab.lab", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("producer", "consumer"):
        p = sub.add_parser(name, help=f"the lab's Simple{name.capitalize()}")
        p.add_argument("--bootstrap-servers", default=None, help="default: the local stack's broker")
        p.add_argument("--topic", default=DEFAULT_TOPIC, help=f"default: {DEFAULT_TOPIC}")
    producer = sub.choices["producer"]
    producer.add_argument(
        "--timeout", type=float, default=30.0, help="seconds to get each record acknowledged"
    )
    consumer = sub.choices["consumer"]
    consumer.add_argument("--group", default=DEFAULT_GROUP, help=f"consumer group (default: {DEFAULT_GROUP})")
    consumer.add_argument(
        "--from-beginning", action="store_true", help="without committed offsets, start at the first record"
    )
    consumer.add_argument("--max-messages", type=int, default=None, help="stop after N records")
    consumer.add_argument("--timeout", type=float, default=None, help="stop after S seconds")
    args = parser.parse_args(argv)

    bootstrap = args.bootstrap_servers or default_bootstrap()
    if args.command == "producer":
        return run_producer(bootstrap, args.topic, timeout=args.timeout)
    return run_consumer(
        bootstrap,
        args.topic,
        args.group,
        from_beginning=args.from_beginning,
        max_messages=args.max_messages,
        timeout=args.timeout,
    )


if __name__ == "__main__":
    sys.exit(main())
