"""Creates or deletes one ACL binding through a gateway with confluent-kafka's admin API,
as a super user over SASL_PLAINTEXT/SCRAM-SHA-256:
BOOTSTRAP ADMIN_PASSWORD create|delete PRINCIPAL TOPIC OPERATION. Prints the bindings the
call created or deleted."""
import sys

from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
)

bootstrap, password, action, principal, topic, operation = sys.argv[1:7]
admin = AdminClient(
    {
        "bootstrap.servers": bootstrap,
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": "SCRAM-SHA-256",
        "sasl.username": "admin",
        "sasl.password": password,
    }
)
fields = (
    ResourceType.TOPIC,
    topic,
    ResourcePatternType.LITERAL,
    principal,
    "*",
    AclOperation[operation],
    AclPermissionType.ALLOW,
)
if action == "create":
    binding = AclBinding(*fields)
    for future in admin.create_acls([binding]).values():
        future.result(timeout=30)
    print(1)
else:
    (future,) = admin.delete_acls([AclBindingFilter(*fields)]).values()
    print(len(future.result(timeout=30)))
