"""The plant drill's producer (scripts/drill-kafka): confluent-kafka, idempotent, sends COUNT
confirmations with unique event ids, resends 5% (a gateway after an outage), and one in 997
breaks the schema. Writes each acknowledged event id (with partition and offset) to ACKED and
each refused one (with the error) to REFUSED.

usage: plant_producer.py BOOTSTRAP TOPIC COUNT ACKED REFUSED"""
import json, sys, time
from confluent_kafka import Producer
bootstrap, topic, count, acked_path, refused_path = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
acked = open(acked_path, "w"); refused = open(refused_path, "w")
retry = []
def delivered(error, message):
    event = json.loads(message.value())["event_id"]
    if error is None:
        acked.write(f"{event} {message.partition()} {message.offset()}\n")
    elif error.name() == "_INVALID_DIFFERENT_RECORD":
        # Refused only because another record of its batch broke the schema: send it again.
        retry.append(message.value())
    else:
        refused.write(f"{event} {error.name()}\n")
p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5, "message.timeout.ms": 120000,
              "reconnect.backoff.ms": 50, "reconnect.backoff.max.ms": 500, "client.id": "mes-line-3"})
for n in range(count):
    lot = f"LOT-{n % 500:04d}"
    qty = -1 if n % 997 == 0 else n % 50
    record = {"event_id": f"E{n}", "lot": lot, "qty": qty}
    sends = 2 if n % 20 == 7 else 1
    for _ in range(sends):
        while True:
            try:
                p.produce(topic, key=lot, value=json.dumps(record), on_delivery=delivered); break
            except BufferError:
                p.poll(0.05)
    p.poll(0)
    while retry:
        value = retry.pop()
        p.produce(topic, key=json.loads(value)["lot"], value=value, on_delivery=delivered)
    if n % 100 == 0: time.sleep(0.02)
while p.flush(1.0) > 0 or retry:
    while retry:
        value = retry.pop()
        p.produce(topic, key=json.loads(value)["lot"], value=value, on_delivery=delivered)
acked.close(); refused.close()
print("done", flush=True)
