"""Reads COUNT records of partition 0 from the beginning with kafka-python (manual
assignment, no group) and prints "offset key value" per record, value "null" for a
tombstone: what a changelog reader sees of a compacted topic."""
import sys
import time

from kafka import KafkaConsumer, TopicPartition

bootstrap, topic, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
partition = TopicPartition(topic, 0)
consumer.assign([partition])
consumer.seek_to_beginning(partition)
lines = []
deadline = time.time() + 30
while len(lines) < count and time.time() < deadline:
    for records in consumer.poll(timeout_ms=500).values():
        for record in records:
            value = "null" if record.value is None else record.value.decode()
            lines.append(f"{record.offset} {record.key.decode()} {value}")
consumer.close()
print("\n".join(lines))
