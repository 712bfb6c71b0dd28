"""Manages SCRAM users through a gateway with confluent-kafka's admin API, authenticated
as an existing user: BOOTSTRAP CA_FILE ADMIN ADMIN_PASSWORD NEW_USER NEW_PASSWORD.
Creates NEW_USER with a SCRAM-SHA-512 credential, then prints what DescribeUserScramCredentials
says of it and of an unknown user."""
import sys

from confluent_kafka import KafkaException
from confluent_kafka.admin import (
    AdminClient,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialUpsertion,
)

bootstrap, ca_file, admin_user, admin_password, user, password = sys.argv[1:7]
admin = AdminClient(
    {
        "bootstrap.servers": bootstrap,
        "security.protocol": "SASL_SSL",
        "ssl.ca.location": ca_file,
        "sasl.mechanism": "SCRAM-SHA-256",
        "sasl.username": admin_user,
        "sasl.password": admin_password,
    }
)
info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 8192)
futures = admin.alter_user_scram_credentials(
    [UserScramCredentialUpsertion(user, info, password.encode())]
)
for future in futures.values():
    future.result(timeout=30)
described = admin.describe_user_scram_credentials([user]).get(user).result(timeout=30)
mechanisms = [
    f"{c.mechanism.name}:{c.iterations}" for c in described.scram_credential_infos
]
try:
    admin.describe_user_scram_credentials(["nobody"])["nobody"].result(timeout=30)
    unknown = "found"
except KafkaException as e:
    unknown = e.args[0].name()
print(" ".join(mechanisms), unknown)
