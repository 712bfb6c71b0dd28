"""Produces three records with kafka-python over SASL_SSL and SCRAM, and prints their
offsets: BOOTSTRAP TOPIC MECHANISM USER PASSWORD CA_FILE."""
import sys

from kafka import KafkaProducer

bootstrap, topic, mechanism, user, password, ca_file = sys.argv[1:7]
producer = KafkaProducer(
    bootstrap_servers=bootstrap,
    security_protocol="SASL_SSL",
    sasl_mechanism=mechanism,
    sasl_plain_username=user,
    sasl_plain_password=password,
    ssl_cafile=ca_file,
    acks="all",
)
futures = [producer.send(topic, f"kafka-python {i}".encode(), partition=0) for i in range(3)]
offsets = [future.get(timeout=30).offset for future in futures]
producer.close()
print(" ".join(map(str, offsets)))
