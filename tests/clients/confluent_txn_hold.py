"""A transaction held open (confluent-kafka): writes LABEL-0..29 under keys 0..29 over three
partitions, flushes, prints "open", then waits for a line on standard input: "commit" or
"abort" ends the transaction that way; it prints what became of it ("committed", "aborted",
or "error <name>" with the error librdkafka reported, e.g. a fenced producer's).
"""

import sys

from confluent_kafka import KafkaException, Producer

bootstrap, topic, transactional_id, label, timeout_ms = sys.argv[1:6]

producer = Producer(
    {
        "bootstrap.servers": bootstrap,
        "transactional.id": transactional_id,
        "transaction.timeout.ms": int(timeout_ms),
        "linger.ms": 5,
    }
)
producer.init_transactions(30)
producer.begin_transaction()
for i in range(30):
    producer.produce(topic, value=f"{label}-{i}".encode(), key=str(i).encode(), partition=i % 3)
producer.flush(30)
print("open", flush=True)

command = sys.stdin.readline().strip()
try:
    if command == "commit":
        producer.commit_transaction(30)
        print("committed", flush=True)
    else:
        producer.abort_transaction(30)
        print("aborted", flush=True)
except KafkaException as e:
    print(f"error {e.args[0].name()}", flush=True)
