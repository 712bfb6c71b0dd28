"""Reads COUNT records of partition 0 from the beginning with confluent-kafka (librdkafka),
manual assignment, no group, and prints their values one per line."""
import sys
import time

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

bootstrap, topic, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
consumer = Consumer({
    "bootstrap.servers": bootstrap,
    "group.id": "unused-with-manual-assignment",
    "enable.auto.commit": False,
})
consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
values = []
deadline = time.time() + 30
while len(values) < count and time.time() < deadline:
    message = consumer.poll(0.5)
    if message is None:
        continue
    if message.error():
        raise SystemExit(f"fetch failed: {message.error()}")
    values.append(message.value().decode())
consumer.close()
print("\n".join(values))
