"""IncrementalAlterConfigs with confluent-kafka: on TOPIC, SETs each NAME=VALUE argument
and DELETEs each bare NAME; prints `ok` or the error."""
import sys

from confluent_kafka.admin import (AdminClient, AlterConfigOpType, ConfigEntry,
                                   ConfigResource)

bootstrap, topic = sys.argv[1], sys.argv[2]
entries = []
for arg in sys.argv[3:]:
    if "=" in arg:
        name, value = arg.split("=", 1)
        entries.append(ConfigEntry(name, value, incremental_operation=AlterConfigOpType.SET))
    else:
        entries.append(ConfigEntry(arg, None, incremental_operation=AlterConfigOpType.DELETE))
admin = AdminClient({"bootstrap.servers": bootstrap})
resource = ConfigResource(ConfigResource.Type.TOPIC, topic, incremental_configs=entries)
try:
    admin.incremental_alter_configs([resource])[resource].result()
    print("ok")
except Exception as e:  # the test reads the error
    print(f"error {e}")
