#!/usr/bin/env python3
"""confluent-kafka (librdkafka) against a broker's Kafka listener, for KafkaClientTests.

    confluent_client.py produce BOOTSTRAP TOPIC --count N [--partition P] [--prefix S]
    confluent_client.py consume BOOTSTRAP TOPIC --group G [--reset earliest|latest]
    confluent_client.py create-topic BOOTSTRAP TOPIC --partitions N [--config k=v ...]
    confluent_client.py describe-configs BOOTSTRAP TOPIC
    confluent_client.py delete-topic BOOTSTRAP TOPIC
    confluent_client.py group-pair BOOTSTRAP TOPIC --group G --count N

Prints JSON lines (common.emit); exits non-zero on any failure; every wait is bounded by
--timeout seconds.
"""

import argparse
import sys

sys.dont_write_bytecode = True  # no __pycache__ of common.py in the source tree

from common import NOTE, Deadline, emit, fail, headers_of, parse_configs, require_modules, security_config, text  # noqa: E402

require_modules(["confluent_kafka"])
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition  # noqa: E402
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic, ResourceType  # noqa: E402


def producer(bootstrap):
    return Producer(
        {
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            "acks": "all",
            "compression.type": "zstd",
            "linger.ms": 5,
            "message.timeout.ms": 20000,
            **security_config(),
        }
    )


def consumer(bootstrap, group, reset="earliest", eof=True):
    return Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "auto.offset.reset": reset,
            "enable.auto.commit": False,
            "enable.partition.eof": eof,
            "session.timeout.ms": 10000,
            # Rebalances are noticed on a heartbeat: a short interval keeps the test short.
            "heartbeat.interval.ms": 500,
            **security_config(),
        }
    )


def send_all(bootstrap, topic, records, deadline):
    """Sends (partition or None, key, value, headers) records; returns deliveries in send order."""
    made = producer(bootstrap)
    delivered = [None] * len(records)
    errors = []

    def report(index):
        def on_delivery(error, message):
            if error is not None:
                errors.append(f"record {index}: {error}")
            else:
                delivered[index] = (message.partition(), message.offset())

        return on_delivery

    for index, (partition, key, value, headers) in enumerate(records):
        extra = {} if partition is None else {"partition": partition}
        made.produce(topic, key=key, value=value, headers=headers, on_delivery=report(index), **extra)
        made.poll(0)
    left = made.flush(deadline.left())
    if left or errors or None in delivered:
        fail(f"produce to {topic}: {left} undelivered, errors: {errors[:5]}")
    return delivered


def commit(made):
    """Commits what was read; a consumer that read nothing has nothing to commit."""
    try:
        made.commit(asynchronous=False)
    except KafkaException as error:
        if error.args[0].code() != KafkaError._NO_OFFSET:
            raise


def committed(made, topic, partitions):
    found = made.committed([TopicPartition(topic, p) for p in sorted(partitions)], timeout=10)
    return {str(tp.partition): tp.offset for tp in found}


def record_fields(message):
    return {
        "partition": message.partition(),
        "offset": message.offset(),
        "key": text(message.key()),
        "value": text(message.value()),
        "headers": headers_of(message.headers()),
    }


def produce(args):
    deadline = Deadline(args.timeout)
    records = [
        (args.partition, f"{args.prefix}-key-{i}".encode(), f"{args.prefix}-value-{i} {NOTE}".encode(), [("source", b"confluent"), ("index", str(i).encode())])
        for i in range(args.count)
    ]
    for (partition, offset), (_, key, value, headers) in zip(send_all(args.bootstrap, args.topic, records, deadline), records):
        emit("delivery", partition=partition, offset=offset, key=text(key), value=text(value), headers=headers_of(headers))


def consume(args):
    """Reads with a group until every assigned partition is at its end, then commits."""
    deadline = Deadline(args.timeout)
    made = consumer(args.bootstrap, args.group, args.reset)
    assigned = set()
    at_end = set()

    def on_assign(_, partitions):
        assigned.update(p.partition for p in partitions)
        emit("assigned", partitions=sorted(assigned))

    def on_revoke(_, partitions):
        assigned.difference_update(p.partition for p in partitions)
        at_end.difference_update(p.partition for p in partitions)

    made.subscribe([args.topic], on_assign=on_assign, on_revoke=on_revoke)
    try:
        while not (assigned and assigned <= at_end):
            if deadline.passed():
                fail(f"consume {args.topic}: assigned {sorted(assigned)}, at the end of {sorted(at_end)} after {args.timeout} s")
            message = made.poll(min(0.2, deadline.left()))
            if message is None:
                continue
            if message.error():
                if message.error().code() == KafkaError._PARTITION_EOF:
                    at_end.add(message.partition())
                    continue
                fail(f"consume {args.topic}: {message.error()}")
            at_end.discard(message.partition())
            emit("record", **record_fields(message))
        commit(made)
        emit("committed", offsets=committed(made, args.topic, assigned))
    finally:
        made.close()


def create_topic(args):
    admin = AdminClient({"bootstrap.servers": args.bootstrap, **security_config()})
    topic = NewTopic(args.topic, num_partitions=args.partitions, replication_factor=1, config=parse_configs(args.config))
    for name, future in admin.create_topics([topic], request_timeout=args.timeout).items():
        future.result(timeout=args.timeout)
        emit("created", topic=name)


def describe_configs(args):
    admin = AdminClient({"bootstrap.servers": args.bootstrap, **security_config()})
    resource = ConfigResource(ResourceType.TOPIC, args.topic)
    for _, future in admin.describe_configs([resource], request_timeout=args.timeout).items():
        entries = future.result(timeout=args.timeout)
        emit("configs", topic=args.topic, configs={name: entry.value or "" for name, entry in entries.items()})


def delete_topic(args):
    admin = AdminClient({"bootstrap.servers": args.bootstrap, **security_config()})
    for name, future in admin.delete_topics([args.topic], request_timeout=args.timeout).items():
        future.result(timeout=args.timeout)
        emit("deleted", topic=name)
    topics = admin.list_topics(timeout=args.timeout).topics
    emit("topics", topics=sorted(topics))


def group_pair(args):
    """Two members share a topic's partitions; one leaves and the other takes them all.

    Records are produced only once the group is stable, so the first phase has no rebalance
    in it; both commit what they read before the first one closes.
    """
    deadline = Deadline(args.timeout)
    members = {}
    for name in ("c1", "c2"):
        made = consumer(args.bootstrap, args.group, eof=False)
        owned = set()

        def on_assign(_, partitions, owned=owned, name=name):
            owned.update(p.partition for p in partitions)
            emit("assigned", consumer=name, partitions=sorted(owned))

        def on_revoke(_, partitions, owned=owned, name=name):
            owned.difference_update(p.partition for p in partitions)
            emit("revoked", consumer=name, partitions=sorted(p.partition for p in partitions))

        made.subscribe([args.topic], on_assign=on_assign, on_revoke=on_revoke)
        members[name] = (made, owned)
    partition_count = len(members["c1"][0].list_topics(args.topic, timeout=10).topics[args.topic].partitions)
    every = set(range(partition_count))
    seen = set()

    def poll(names, phase, until, what):
        while not until():
            if deadline.passed():
                fail(f"group-pair: {what} not reached in {args.timeout} s; owned {[(n, sorted(members[n][1])) for n in members]}")
            for name in names:
                message = members[name][0].poll(0.05)
                if message is None:
                    continue
                if message.error():
                    fail(f"group-pair {name}: {message.error()}")
                seen.add(text(message.value()))
                emit("record", consumer=name, phase=phase, **record_fields(message))

    def stable():
        c1, c2 = members["c1"][1], members["c2"][1]
        return c1 and c2 and not (c1 & c2) and (c1 | c2) == every

    def produce_phase(phase):
        values = [f"phase{phase}-{i}" for i in range(args.count)]
        records = [(i % partition_count, v.encode(), v.encode(), []) for i, v in enumerate(values)]
        for (partition, offset), value in zip(send_all(args.bootstrap, args.topic, records, deadline), values):
            emit("delivery", phase=phase, partition=partition, offset=offset, value=value)
        return set(values)

    try:
        poll(["c1", "c2"], 0, stable, "both members owning partitions")
        emit("stable", owned={n: sorted(members[n][1]) for n in members})
        first = produce_phase(1)
        poll(["c1", "c2"], 1, lambda: first <= seen, "phase 1 read")
        emit("phase1-end", owned={n: sorted(members[n][1]) for n in members})
        for name in ("c1", "c2"):
            made, owned = members[name]
            commit(made)
            emit("committed", consumer=name, offsets=committed(made, args.topic, owned))
        members.pop("c1")[0].close()
        emit("closed", consumer="c1")
        poll(["c2"], 2, lambda: members["c2"][1] == every, "c2 owning every partition")
        emit("taken-over", partitions=sorted(members["c2"][1]))
        second = produce_phase(2)
        poll(["c2"], 2, lambda: second <= seen, "phase 2 read")
        made = members["c2"][0]
        commit(made)
        emit("committed", consumer="c2", offsets=committed(made, args.topic, every))
    finally:
        for made, _ in members.values():
            made.close()


def main():
    parser = argparse.ArgumentParser()
    commands = parser.add_subparsers(dest="command", required=True)
    for name, run in [
        ("produce", produce),
        ("consume", consume),
        ("create-topic", create_topic),
        ("describe-configs", describe_configs),
        ("delete-topic", delete_topic),
        ("group-pair", group_pair),
    ]:
        command = commands.add_parser(name)
        command.set_defaults(run=run)
        command.add_argument("bootstrap")
        command.add_argument("topic")
        command.add_argument("--timeout", type=float, default=30)
        if name == "produce":
            command.add_argument("--count", type=int, required=True)
            command.add_argument("--partition", type=int)
            command.add_argument("--prefix", default="confluent")
        if name == "consume":
            command.add_argument("--group", required=True)
            command.add_argument("--reset", default="earliest", choices=["earliest", "latest"])
        if name == "create-topic":
            command.add_argument("--partitions", type=int, required=True)
            command.add_argument("--config", action="append")
        if name == "group-pair":
            command.add_argument("--group", required=True)
            command.add_argument("--count", type=int, required=True)
    args = parser.parse_args()
    try:
        args.run(args)
    except KafkaException as error:
        fail(f"{args.command}: {error}")


if __name__ == "__main__":
    main()
