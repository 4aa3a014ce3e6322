"""An idempotent confluent-kafka producer that sends COUNT numbered records to TOPIC and
retries through broker restarts. Prints one JSON line at the end:
{"acknowledged": N, "failed": [...first errors...]}. Exits 0 when every record was acknowledged.

usage: kill_restart_producer.py BOOTSTRAP TOPIC COUNT [PROGRESS_FILE]
PROGRESS_FILE, when given, gets the acknowledged count written to it as it grows (so the test
can kill the broker in the middle of the stream)."""
import json
import sys
import time

from confluent_kafka import Producer

bootstrap, topic, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
progress = sys.argv[4] if len(sys.argv) > 4 else None
acknowledged = 0
failed = []


def delivered(error, message):
    global acknowledged
    if error is None:
        acknowledged += 1
    elif len(failed) < 10:
        failed.append(str(error))


producer = Producer({
    "bootstrap.servers": bootstrap,
    "enable.idempotence": True,
    "compression.type": "zstd",
    "linger.ms": 5,
    "batch.num.messages": 200,
    "message.timeout.ms": 120000,
    "reconnect.backoff.ms": 50,
    "reconnect.backoff.max.ms": 500,
})
deadline = time.time() + 150
last_written = -1
for number in range(count):
    while True:
        try:
            producer.produce(topic, key=f"lot-{number % 97}", value=json.dumps({"n": number}), headers={"src": "kill-test"}, on_delivery=delivered)
            break
        except BufferError:
            producer.poll(0.05)
    producer.poll(0)
    if progress and number % 100 == 0 and acknowledged != last_written:
        last_written = acknowledged
        with open(progress, "w") as out:
            out.write(str(acknowledged))
    # Pace the stream so the kills land in the middle of it.
    if number % 50 == 0:
        time.sleep(0.05)
while producer.flush(1.0) > 0 and time.time() < deadline:
    if progress:
        with open(progress, "w") as out:
            out.write(str(acknowledged))
left = producer.flush(1.0)
print(json.dumps({"acknowledged": acknowledged, "failed": failed, "unflushed": left}))
sys.exit(0 if acknowledged == count and not failed else 1)
