"""One member of an exactly-once consume-transform-produce group (confluent-kafka, as
Kafka's exactly-once processors run it, KIP-447): reads INPUT in GROUP read_committed, and
for each batch it polls writes "out-VALUE" to OUTPUT and sends the consumed offsets to the
same transaction, then commits. Runs until killed; prints "ready" once it holds
partitions, and "committed N" after each transaction.
"""

import sys

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

bootstrap, input_topic, output_topic, group, transactional_id = sys.argv[1:6]

consumer = Consumer(
    {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "isolation.level": "read_committed",
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": 6000,
        "heartbeat.interval.ms": 500,
    }
)
producer = Producer(
    {
        "bootstrap.servers": bootstrap,
        "transactional.id": transactional_id,
        "transaction.timeout.ms": 10000,
        "linger.ms": 5,
    }
)
producer.init_transactions(30)
consumer.subscribe([input_topic])
announced = False


def rewind():
    """Back to the group's committed offsets: what an aborted transaction consumed is read
    again."""
    assigned = consumer.assignment()
    if not assigned:
        return
    for tp in consumer.committed(assigned, timeout=30):
        consumer.seek(TopicPartition(tp.topic, tp.partition, tp.offset if tp.offset >= 0 else 0))


while True:
    messages = consumer.consume(num_messages=50, timeout=0.5)
    if not announced and consumer.assignment():
        print("ready", flush=True)
        announced = True
    messages = [m for m in messages if m.error() is None]
    if not messages:
        continue
    producer.begin_transaction()
    for m in messages:
        producer.produce(output_topic, key=m.key(), value=b"out-" + m.value())
    try:
        producer.send_offsets_to_transaction(
            consumer.position(consumer.assignment()), consumer.consumer_group_metadata(), 30
        )
        producer.commit_transaction(30)
        print(f"committed {len(messages)}", flush=True)
    except KafkaException as e:
        error = e.args[0]
        if error.txn_requires_abort():
            producer.abort_transaction(30)
            rewind()
        elif error.retriable():
            producer.abort_transaction(30)
            rewind()
        else:
            raise
