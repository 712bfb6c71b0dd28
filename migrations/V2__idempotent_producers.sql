-- Idempotent producers: ids, epochs, and what each partition remembers of each producer.

-- Producer ids are handed out in blocks of 1000 (block n holds ids n*1000 .. n*1000+999),
-- so a gateway asks PostgreSQL once per thousand InitProducerId calls. A sequence never
-- hands out the same block twice, even to concurrent callers or after a rollback.
CREATE SEQUENCE producer_id_blocks AS bigint MINVALUE 0 START 0;

-- Producers that moved to a newer epoch through InitProducerId (KIP-360). A producer absent
-- here is at the epoch it was handed out with, 0. Rows expire with producer_states.
CREATE TABLE producer_epochs (
    producer_id    bigint PRIMARY KEY CHECK (producer_id >= 0),
    producer_epoch smallint NOT NULL CHECK (producer_epoch >= 0),
    updated_ms     bigint NOT NULL
);
CREATE INDEX producer_epochs_by_age ON producer_epochs (updated_ms);

-- Per producer and partition: the newest epoch it wrote with and its last (at most five)
-- stored batches as (first_sequence, last_sequence, base_offset) triples, oldest first,
-- flattened into one array. Read and written only inside flush commits, under the
-- partition's row lock. updated_ms is the committing writer's clock.
CREATE TABLE producer_states (
    producer_id     bigint NOT NULL,
    topic_id        uuid NOT NULL,
    partition_index integer NOT NULL,
    producer_epoch  smallint NOT NULL,
    recent          bigint[] NOT NULL
                    CHECK (cardinality(recent) BETWEEN 3 AND 15 AND cardinality(recent) % 3 = 0),
    updated_ms      bigint NOT NULL,
    PRIMARY KEY (producer_id, topic_id, partition_index),
    FOREIGN KEY (topic_id, partition_index) REFERENCES partitions ON DELETE CASCADE
);
CREATE INDEX producer_states_by_age ON producer_states (updated_ms);
