"""kafka-python's KafkaProducer sends each VALUE (a JSON text) to TOPIC, one at a time, and
prints one JSON line per record: {"offset": N, "partition": P} or {"error": "..."}.

usage: contract_producer.py BOOTSTRAP TOPIC VALUE..."""
import json
import sys

from kafka import KafkaProducer

bootstrap, topic, values = sys.argv[1], sys.argv[2], sys.argv[3:]
producer = KafkaProducer(bootstrap_servers=bootstrap, retries=0, request_timeout_ms=20000, max_block_ms=20000)
for value in values:
    try:
        metadata = producer.send(topic, value=value.encode()).get(timeout=20)
        print(json.dumps({"offset": metadata.offset, "partition": metadata.partition}), flush=True)
    except Exception as error:  # the test reads what the client says
        print(json.dumps({"error": f"{type(error).__name__}: {error}"}), flush=True)
producer.close(timeout=10)
