"""Produces ten records with confluent-kafka (librdkafka) and prints their offsets."""
import sys

from confluent_kafka import Producer

bootstrap, topic = sys.argv[1], sys.argv[2]
producer = Producer({"bootstrap.servers": bootstrap, "compression.type": "zstd"})
offsets = []


def delivered(err, msg):
    if err is not None:
        raise SystemExit(f"delivery failed: {err}")
    offsets.append(msg.offset())


for i in range(10):
    producer.produce(topic, f"confluent {i}".encode(), key=b"py", on_delivery=delivered)
producer.flush(30)
print(" ".join(map(str, offsets)))
