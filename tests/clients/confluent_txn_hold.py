"""A transaction held open (confluent-kafka): writes LABEL-0..29 under keys 0..29 over three
partitions, flushes, prints "open", then waits for a line on standard input: "commit" or
"abort" ends the transaction that way; it prints what became of it ("committed", "aborted",
"aborted after <name>" when the commit failed with an error that requires an abort, or
"error <name>" with the error librdkafka reported, e.g. a fenced producer's).

With a sixth argument "unflushed" it prints "sent" instead, once its produce requests have
left, without waiting for their acknowledgements (the records may still be in a writer's
buffer).
"""

import sys

from confluent_kafka import KafkaException, Producer

bootstrap, topic, transactional_id, label, timeout_ms = sys.argv[1:6]
unflushed = sys.argv[6:7] == ["unflushed"]

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
if unflushed:
    producer.poll(0.5)
    print("sent", flush=True)
else:
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
    error = e.args[0]
    if command == "commit" and error.txn_requires_abort():
        producer.abort_transaction(30)
        print(f"aborted after {error.name()}", flush=True)
    else:
        print(f"error {error.name()}", flush=True)
