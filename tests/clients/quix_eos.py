"""A Quix Streams application with exactly-once processing, as a user writes one: counts
the records of each key of topic INPUT in its state (RocksDB under STATE_DIR, backed by a
changelog topic) and writes each new count to topic OUTPUT, the output, the changelog and
the consumer offsets of every checkpoint in one Kafka transaction. Stops after COUNT
records."""
import sys

from quixstreams import Application

bootstrap, input_topic, output_topic, state_dir, count = sys.argv[1:6]
app = Application(
    broker_address=bootstrap,
    consumer_group="eos-counter",
    state_dir=state_dir,
    auto_offset_reset="earliest",
    processing_guarantee="exactly-once",
    commit_every=10,
    loglevel="WARNING",
)
source = app.topic(input_topic, key_deserializer="str", value_deserializer="str")
sink = app.topic(output_topic, key_serializer="str", value_serializer="json")


def count_by_key(value, state):
    seen = state.get("count", 0) + 1
    state.set("count", seen)
    return seen


app.dataframe(source).apply(count_by_key, stateful=True).to_topic(sink)
app.run(count=int(count), timeout=120)
