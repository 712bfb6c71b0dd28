"""Transactions as kafka-python runs them: one transactional producer commits A, aborts B
and commits C over three partitions with the given codec (`read_isolated.py` then reads
them back).
"""

import sys

from kafka import KafkaProducer

bootstrap, topic, transactional_id, codec = sys.argv[1:5]

producer = KafkaProducer(
    bootstrap_servers=bootstrap,
    transactional_id=transactional_id,
    compression_type=None if codec == "none" else codec,
    linger_ms=5,
)
producer.init_transactions()


def transaction(label, commit):
    producer.begin_transaction()
    for i in range(30):
        producer.send(topic, value=f"{label}-{i}".encode(), key=str(i).encode(), partition=i % 3)
    if commit:
        producer.commit_transaction()
    else:
        producer.flush()
        producer.abort_transaction()


transaction("A", True)
transaction("B", False)
transaction("C", True)
producer.close()
