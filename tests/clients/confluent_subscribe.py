"""Reads COUNT records of TOPIC as a member of GROUP with confluent-kafka (librdkafka)
`subscribe()`, from the group's committed offsets (the beginning for a new group), commits
what it read, leaves the group and prints the values one per line, in partition order."""
import sys
import time

from confluent_kafka import Consumer

bootstrap, topic, group, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
consumer = Consumer({
    "bootstrap.servers": bootstrap,
    "group.id": group,
    "enable.auto.commit": False,
    "auto.offset.reset": "earliest",
})
consumer.subscribe([topic])
records = []
deadline = time.time() + 60
while len(records) < count and time.time() < deadline:
    message = consumer.poll(0.5)
    if message is None:
        continue
    if message.error():
        raise SystemExit(f"consume failed: {message.error()}")
    records.append((message.partition(), message.offset(), message.value().decode()))
consumer.commit(asynchronous=False)
consumer.close()
print("\n".join(value for _, _, value in sorted(records)))
