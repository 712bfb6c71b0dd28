-- Transactions (issue 23): transactional ids and their producers, what each open
-- transaction holds, and what the read path needs of finished ones. The end of a
-- transaction (markers indexed, offsets moved, these rows changed) is one PostgreSQL
-- transaction; the rules are in common/src/metastore/transactions.rs.

-- One row per transactional id. Kafka's Prepare* states never last here: a transaction
-- goes from Ongoing to Complete* in one step. start_ms is -1 unless one is open; groups are
-- the consumer groups AddOffsetsToTxn added to the open transaction.
CREATE TABLE transactions (
    transactional_id     text PRIMARY KEY,
    producer_id          bigint NOT NULL CHECK (producer_id >= 0),
    producer_epoch       smallint NOT NULL CHECK (producer_epoch >= 0),
    last_epoch           smallint NOT NULL,
    previous_producer_id bigint NOT NULL,
    state                text NOT NULL
                         CHECK (state IN ('Empty', 'Ongoing', 'CompleteCommit', 'CompleteAbort')),
    timeout_ms           integer NOT NULL CHECK (timeout_ms > 0),
    start_ms             bigint NOT NULL,
    updated_ms           bigint NOT NULL,
    groups               text[] NOT NULL
);
-- Flush commits look transactional batches up by their producer id.
CREATE INDEX transactions_by_producer ON transactions (producer_id);
CREATE INDEX transactions_open ON transactions (start_ms) WHERE state = 'Ongoing';

-- The partitions of each open transaction. first_offset is the offset of the
-- transaction's first stored batch in the partition (set by the flush commit that stores
-- it, under the partition's lock), NULL while none is: the partition's last stable offset
-- is the least first_offset of its rows, or its next_offset when there is none.
CREATE TABLE txn_partitions (
    transactional_id text NOT NULL REFERENCES transactions ON DELETE CASCADE,
    topic_id         uuid NOT NULL,
    partition_index  integer NOT NULL,
    first_offset     bigint,
    PRIMARY KEY (transactional_id, topic_id, partition_index),
    FOREIGN KEY (topic_id, partition_index) REFERENCES partitions ON DELETE CASCADE
);
CREATE INDEX txn_partitions_by_partition
    ON txn_partitions (topic_id, partition_index, first_offset);

-- Offsets TxnOffsetCommit gave an open transaction: moved into group_offsets if it
-- commits, dropped if it aborts. OffsetFetch with require_stable asks whether any wait.
CREATE TABLE txn_offsets (
    transactional_id text NOT NULL REFERENCES transactions ON DELETE CASCADE,
    group_id         text NOT NULL,
    topic            text NOT NULL,
    partition_index  integer NOT NULL,
    committed_offset bigint NOT NULL,
    leader_epoch     integer NOT NULL,
    metadata         text,
    commit_ms        bigint NOT NULL,
    PRIMARY KEY (transactional_id, group_id, topic, partition_index)
);
CREATE INDEX txn_offsets_by_group ON txn_offsets (group_id, topic, partition_index);

-- Aborted transactions per partition, as Kafka's transaction index keeps them: the
-- producer, the offset of its first batch here and of the abort marker. A read_committed
-- Fetch lists those whose range meets what it returns; rows below the log start go with
-- retention.
CREATE TABLE aborted_txns (
    topic_id        uuid NOT NULL,
    partition_index integer NOT NULL,
    producer_id     bigint NOT NULL,
    first_offset    bigint NOT NULL,
    last_offset     bigint NOT NULL CHECK (last_offset >= first_offset),
    PRIMARY KEY (topic_id, partition_index, last_offset),
    FOREIGN KEY (topic_id, partition_index) REFERENCES partitions ON DELETE CASCADE
);
