"""Transactions as confluent-kafka (librdkafka) runs them: one transactional producer
commits A, aborts B and commits C over three partitions with the given codec; then a
read_committed and a read_uncommitted consumer read the topic to its end.

Prints JSON: {"committed": [...], "uncommitted": [...]} with the values each read, sorted.
"""

import json
import sys
import time

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

bootstrap, topic, transactional_id, codec = sys.argv[1:5]

producer = Producer(
    {
        "bootstrap.servers": bootstrap,
        "transactional.id": transactional_id,
        "transaction.timeout.ms": 60000,
        "compression.type": codec,
        "linger.ms": 5,
    }
)
producer.init_transactions(30)


def transaction(label, commit):
    producer.begin_transaction()
    for i in range(30):
        producer.produce(topic, value=f"{label}-{i}".encode(), key=str(i).encode(), partition=i % 3)
    if commit:
        producer.commit_transaction(30)
    else:
        producer.flush(30)
        producer.abort_transaction(30)


transaction("A", True)
transaction("B", False)
transaction("C", True)


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
