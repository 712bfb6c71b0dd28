"""Produces ten records with confluent-kafka (librdkafka) and prints their offsets.

Idempotence as the Java client defaults to (since 3.0): enable.idempotence, acks=all,
five requests in flight per connection."""
import sys

from confluent_kafka import Producer

bootstrap, topic = sys.argv[1], sys.argv[2]
producer = Producer(
    {
        "bootstrap.servers": bootstrap,
        "compression.type": "zstd",
        "enable.idempotence": True,
        "acks": "all",
        "max.in.flight.requests.per.connection": 5,
    }
)
offsets = []


def delivered(err, msg):
    if err is not None:
        raise SystemExit(f"delivery failed: {err}")
    offsets.append(msg.offset())


for i in range(10):
    producer.produce(topic, f"confluent {i}".encode(), key=b"py", on_delivery=delivered)
producer.flush(30)
print(" ".join(map(str, offsets)))
