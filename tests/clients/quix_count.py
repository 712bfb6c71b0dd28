"""A Quix Streams stateful application, as a user writes one: counts the records of each
key of topic INPUT in its state (RocksDB under STATE_DIR, backed by the changelog topic
Quix Streams creates compacted), stops after COUNT records and prints "key count" for each
key it saw, with the count after its last record."""
import sys

from quixstreams import Application

bootstrap, input_topic, state_dir, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
app = Application(
    broker_address=bootstrap,
    consumer_group="counter",
    state_dir=state_dir,
    auto_offset_reset="earliest",
    # A checkpoint every 10 records: each writes every changed key's state to the
    # changelog, so the changelog holds many versions of each key for compaction to remove.
    commit_every=10,
    loglevel="WARNING",
)
topic = app.topic(input_topic, key_deserializer="str", value_deserializer="str")


def count_by_key(value, key, timestamp, headers, state):
    seen = state.get("count", 0) + 1
    state.set("count", seen)
    return seen


sdf = app.dataframe(topic).apply(count_by_key, stateful=True, metadata=True)
rows = app.run(count=count, timeout=120, metadata=True)
last = {}
for row in rows:
    last[row["_key"]] = row["_value"]
for key in sorted(last):
    print(f"{key} {last[key]}")
