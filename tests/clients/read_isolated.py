"""Reads a topic of three partitions to its end twice, with isolation.level read_committed
and read_uncommitted (confluent-kafka, librdkafka's consumer).

Prints JSON: {"committed": [...], "uncommitted": [...]} with the values each read, sorted.
"""

import json
import sys
import time

from confluent_kafka import Consumer, KafkaError, TopicPartition

bootstrap, topic = sys.argv[1:3]


def read(isolation):
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"reader-{isolation}",
            "isolation.level": isolation,
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    consumer.assign([TopicPartition(topic, p, 0) for p in range(3)])
    seen, ended = [], set()
    deadline = time.time() + 30
    while len(ended) < 3 and time.time() < deadline:
        message = consumer.poll(0.5)
        if message is None:
            continue
        if message.error():
            if message.error().code() == KafkaError._PARTITION_EOF:
                ended.add(message.partition())
                continue
            raise SystemExit(f"consume failed: {message.error()}")
        seen.append(message.value().decode())
    consumer.close()
    if len(ended) < 3:
        raise SystemExit(f"{isolation} did not reach the end of every partition: {sorted(ended)}")
    return sorted(seen)


print(json.dumps({"committed": read("read_committed"), "uncommitted": read("read_uncommitted")}))
