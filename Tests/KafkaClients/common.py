"""What the Kafka client scripts share: JSON lines out, bounded waits, one way to fail.

Each script prints one JSON object per line on standard output (what KafkaClientTests reads)
and exits non-zero on failure, with the reason on standard error and in a last "failure"
line. Every wait has a deadline: a broker that stops answering ends a script with an error,
never a hang.
"""

import json
import os
import sys
import time


# Appended to the values produced: it compresses well even one record to a batch, so a batch
# sent as zstd stays zstd (librdkafka sends a batch uncompressed when zstd would not make it
# smaller), and the tests can check the codec the broker stored.
NOTE = "checked " * 16


def emit(kind, **fields):
    """One JSON line, flushed at once (a killed script still leaves what it saw)."""
    fields["kind"] = kind
    print(json.dumps(fields, sort_keys=True), flush=True)


def fail(message):
    """Exits 1, saying why on both outputs: standard error may end in a client library's
    log lines written while closing, standard output ends here."""
    print(f"{sys.argv[0]}: {message}", file=sys.stderr, flush=True)
    emit("failure", message=message)
    sys.exit(1)


def require_modules(names):
    """Imports the client libraries, or fails saying how to get them."""
    try:
        return [__import__(name) for name in names]
    except ImportError as error:
        print(f"{sys.argv[0]}: {error}: run scripts/install-deps", file=sys.stderr, flush=True)
        sys.exit(3)


def text(value):
    """Bytes as text (the tests send UTF-8), None as None."""
    if value is None:
        return None
    return value.decode("utf-8") if isinstance(value, (bytes, bytearray)) else str(value)


def headers_of(headers):
    """[[key, value], ...] in the order the record carries them."""
    return [[key, text(value)] for key, value in (headers or [])]


def parse_configs(pairs):
    """["k=v", ...] from the command line as a dict."""
    configs = {}
    for pair in pairs or []:
        key, _, value = pair.partition("=")
        configs[key] = value
    return configs


class Deadline:
    """Seconds left until a fixed moment, for loops that must end."""

    def __init__(self, seconds):
        self.end = time.monotonic() + seconds

    def left(self):
        return max(0.0, self.end - time.monotonic())

    def passed(self):
        return time.monotonic() >= self.end


def security_config():
    """Settings every client of a script gets on top of its own: the security ones
    (security.protocol, sasl.*, ssl.*, or kafka-python's names), as a JSON object in
    KAFKA_CLIENT_CONFIG; empty when unset."""
    return json.loads(os.environ.get("KAFKA_CLIENT_CONFIG", "{}"))
