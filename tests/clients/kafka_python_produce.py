"""Produces ten records with kafka-python and prints their offsets."""
import sys

from kafka import KafkaProducer

bootstrap, topic = sys.argv[1], sys.argv[2]
producer = KafkaProducer(
    bootstrap_servers=bootstrap, compression_type="gzip", acks="all", enable_idempotence=True
)
futures = [producer.send(topic, f"kafka-python {i}".encode(), partition=0) for i in range(10)]
producer.flush()
print(" ".join(str(f.get(timeout=30).offset) for f in futures))
