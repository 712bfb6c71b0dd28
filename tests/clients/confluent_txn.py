"""Transactions as confluent-kafka (librdkafka) runs them: one transactional producer
commits A, aborts B and commits C over three partitions with the given codec
(`read_isolated.py` then reads them back).
"""

import sys

from confluent_kafka import Producer

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
