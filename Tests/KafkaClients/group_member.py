"""A confluent-kafka consumer in GROUP, subscribed to TOPIC: prints {"assigned": [partitions]}
once it has partitions, or {"error": "..."} for the first error the group gives it (then exits
1); stays in the group until its standard input closes or SECONDS pass, then leaves.

usage: group_member.py BOOTSTRAP GROUP TOPIC SECONDS CLIENT_ID"""
import json
import select
import sys
import time

from confluent_kafka import Consumer

bootstrap, group, topic, seconds, client_id = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]), sys.argv[5]
consumer = Consumer({
    "bootstrap.servers": bootstrap, "group.id": group, "client.id": client_id, "auto.offset.reset": "earliest",
    "session.timeout.ms": 10000, "heartbeat.interval.ms": 500,
})
consumer.subscribe([topic])
deadline = time.time() + seconds
announced = False
status = 0
while time.time() < deadline:
    message = consumer.poll(0.2)
    if message is not None and message.error():
        print(json.dumps({"error": message.error().name()}), flush=True)
        status = 1
        break
    if not announced and consumer.assignment():
        print(json.dumps({"assigned": sorted(p.partition for p in consumer.assignment())}), flush=True)
        announced = True
    readable, _, _ = select.select([sys.stdin], [], [], 0)
    if readable and not sys.stdin.read(1):
        break
consumer.close()
sys.exit(status)
