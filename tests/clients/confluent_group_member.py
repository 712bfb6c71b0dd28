"""A consumer group member with confluent-kafka (librdkafka): subscribes to TOPIC in GROUP
with the ASSIGNOR strategy and prints its assignment after every change, as
`assignment 0,3` lines; on SIGTERM it closes (leaving the group) and prints `closed`.
The tests kill it with SIGKILL to make it vanish without leaving."""
import signal
import sys

from confluent_kafka import Consumer

bootstrap, topic, group, assignor = sys.argv[1:5]
consumer = Consumer({
    "bootstrap.servers": bootstrap,
    "group.id": group,
    "partition.assignment.strategy": assignor,
    "session.timeout.ms": 3000,
    "heartbeat.interval.ms": 500,
    "enable.auto.commit": False,
    "auto.offset.reset": "earliest",
})
assigned = set()


def show():
    print("assignment " + ",".join(str(p) for p in sorted(assigned)), flush=True)


def on_assign(_consumer, partitions):
    assigned.update(p.partition for p in partitions)
    show()


def on_revoke(_consumer, partitions):
    assigned.difference_update(p.partition for p in partitions)
    show()


running = True


def stop(*_):
    global running
    running = False


signal.signal(signal.SIGTERM, stop)
consumer.subscribe([topic], on_assign=on_assign, on_revoke=on_revoke)
while running:
    message = consumer.poll(0.2)
    if message is not None and message.error():
        print(f"error {message.error()}", file=sys.stderr, flush=True)
consumer.close()
print("closed", flush=True)
