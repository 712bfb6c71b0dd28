"""Produces COUNT records with confluent-kafka (librdkafka) using the extra client settings
given as key=value, and prints their offsets; prints `refused: <error>` instead when the
client cannot get through (a TLS listener refusing it, say) within a few seconds."""
import sys

from confluent_kafka import KafkaException, Producer

bootstrap, topic, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
extra = dict(arg.split("=", 1) for arg in sys.argv[4:])
errors = []
producer = Producer(
    {
        "bootstrap.servers": bootstrap,
        "acks": "all",
        "message.timeout.ms": 8000,
        "socket.connection.setup.timeout.ms": 4000,
        "error_cb": lambda err: errors.append(str(err)),
        **extra,
    }
)
offsets = []
failures = []


def delivered(err, msg):
    if err is not None:
        failures.append(str(err))
    else:
        offsets.append(msg.offset())


try:
    for i in range(count):
        producer.produce(topic, f"tls {i}".encode(), key=b"k", on_delivery=delivered)
    producer.flush(15)
except KafkaException as e:
    failures.append(str(e))
if failures or len(offsets) != count:
    print("refused:", (failures or errors or ["no acknowledgement"])[0])
else:
    print(" ".join(map(str, sorted(offsets))))
