#!/usr/bin/env python3
"""kafka-python (pure Python, its own protocol code) against a broker's Kafka listener.

    kafka_python_client.py produce BOOTSTRAP TOPIC --count N [--prefix S]
    kafka_python_client.py consume BOOTSTRAP TOPIC --group G
    kafka_python_client.py create-topic BOOTSTRAP TOPIC --partitions N [--config k=v ...]
    kafka_python_client.py delete-topic BOOTSTRAP TOPIC

Prints JSON lines (common.emit); exits non-zero on any failure; every wait is bounded by
--timeout seconds.
"""

import argparse
import sys

sys.dont_write_bytecode = True  # no __pycache__ of common.py in the source tree

from common import NOTE, Deadline, emit, fail, headers_of, parse_configs, require_modules, text, security_config  # noqa: E402

require_modules(["kafka", "zstandard"])  # zstandard: kafka-python's zstd codec
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer  # noqa: E402
from kafka.errors import KafkaError  # noqa: E402


def produce(args):
    deadline = Deadline(args.timeout)
    producer = KafkaProducer(
        bootstrap_servers=args.bootstrap,
        **security_config(),
        compression_type="zstd",
        acks="all",
        linger_ms=5,
        request_timeout_ms=int(args.timeout * 1000),
        max_block_ms=int(args.timeout * 1000),
    )
    try:
        futures = []
        for i in range(args.count):
            key, value = f"{args.prefix}-key-{i}", f"{args.prefix}-value-{i} {NOTE}"
            headers = [("source", b"kafka-python"), ("index", str(i).encode())]
            futures.append((key, value, headers, producer.send(args.topic, key=key.encode(), value=value.encode(), headers=headers)))
        producer.flush(timeout=deadline.left())
        for key, value, headers, future in futures:
            metadata = future.get(timeout=deadline.left())
            emit("delivery", partition=metadata.partition, offset=metadata.offset, key=key, value=value, headers=headers_of(headers))
    finally:
        producer.close(timeout=5)


def consume(args):
    """Reads with a group until its position is at the end of every assigned partition, then commits."""
    deadline = Deadline(args.timeout)
    consumer = KafkaConsumer(
        bootstrap_servers=args.bootstrap,
        **security_config(),
        group_id=args.group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        # A loaded two-core CI runner can starve the heartbeat thread for seconds: a session
        # long enough that the member is not dropped meanwhile (it would rejoin, but slowly).
        session_timeout_ms=30000,
        heartbeat_interval_ms=1000,
    )
    try:
        consumer.subscribe([args.topic])
        while True:
            if deadline.passed():
                fail(f"consume {args.topic}: assigned {sorted(tp.partition for tp in consumer.assignment())} but not at the end after {args.timeout} s")
            for partition_records in consumer.poll(timeout_ms=200).values():
                for record in partition_records:
                    emit(
                        "record",
                        partition=record.partition,
                        offset=record.offset,
                        key=text(record.key),
                        value=text(record.value),
                        headers=headers_of(record.headers),
                    )
            assigned = consumer.assignment()
            if not assigned:
                continue
            ends = consumer.end_offsets(list(assigned), timeout_ms=int(deadline.left() * 1000) or 1)
            if all(consumer.position(tp, timeout_ms=int(deadline.left() * 1000) or 1) >= ends[tp] for tp in assigned):
                break
        emit("assigned", partitions=sorted(tp.partition for tp in assigned))
        consumer.commit(timeout_ms=int(deadline.left() * 1000) or 1)
        offsets = {str(tp.partition): consumer.committed(tp, timeout_ms=10000) for tp in sorted(assigned, key=lambda tp: tp.partition)}
        emit("committed", offsets=offsets)
    finally:
        consumer.close(autocommit=False, timeout_ms=5000)


def admin(args):
    return KafkaAdminClient(bootstrap_servers=args.bootstrap,
        **security_config(), request_timeout_ms=int(args.timeout * 1000))


def create_topic(args):
    client = admin(args)
    try:
        options = {"num_partitions": args.partitions, "replication_factor": 1, "configs": parse_configs(args.config)}
        client.create_topics({args.topic: options}, timeout_ms=int(args.timeout * 1000))
        emit("created", topic=args.topic)
        emit("topics", topics=sorted(client.list_topics()))
    finally:
        client.close()


def delete_topic(args):
    client = admin(args)
    try:
        client.delete_topics([args.topic], timeout_ms=int(args.timeout * 1000))
        emit("deleted", topic=args.topic)
        emit("topics", topics=sorted(client.list_topics()))
    finally:
        client.close()


def main():
    parser = argparse.ArgumentParser()
    commands = parser.add_subparsers(dest="command", required=True)
    for name, run in [("produce", produce), ("consume", consume), ("create-topic", create_topic), ("delete-topic", delete_topic)]:
        command = commands.add_parser(name)
        command.set_defaults(run=run)
        command.add_argument("bootstrap")
        command.add_argument("topic")
        command.add_argument("--timeout", type=float, default=45)
        if name == "produce":
            command.add_argument("--count", type=int, required=True)
            command.add_argument("--prefix", default="kafka-python")
        if name == "consume":
            command.add_argument("--group", required=True)
        if name == "create-topic":
            command.add_argument("--partitions", type=int, required=True)
            command.add_argument("--config", action="append")
    args = parser.parse_args()
    try:
        args.run(args)
    except KafkaError as error:
        fail(f"{args.command}: {type(error).__name__}: {error}")


if __name__ == "__main__":
    main()
