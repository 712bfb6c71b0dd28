-- Fewer rows per transaction (issue 23, the transactional produce target). V9 kept an open
-- transaction's partitions as `txn_partitions` rows: sixteen inserted by AddPartitionsToTxn,
-- updated by the flush that stored the transaction's first batch in each, deleted at its
-- end, each change with two index entries and two foreign-key checks. That was most of the
-- row writes of a transaction, and most of its PostgreSQL CPU.
--
-- Now the partitions are two arrays in the transactional id's own row, which every
-- AddPartitionsToTxn and end writes anyway; and a partition's row in `txn_starts` appears
-- only when a flush stores the transaction's first batch there. The last stable offset of a
-- partition is the least first_offset of its `txn_starts` rows, or its next_offset when
-- there is none. Those rows are written and deleted only under the partition's lock (by the
-- flush commit and by the end), so they need no foreign key; a deleted topic's rows go with
-- the topic's deletion.

ALTER TABLE transactions
    ADD COLUMN partition_topics  uuid[]    NOT NULL DEFAULT '{}',
    ADD COLUMN partition_indexes integer[] NOT NULL DEFAULT '{}',
    ADD CONSTRAINT transaction_partitions_paired
        CHECK (cardinality(partition_topics) = cardinality(partition_indexes));

UPDATE transactions t
SET partition_topics = p.topics, partition_indexes = p.indexes
FROM (SELECT transactional_id,
             array_agg(topic_id ORDER BY topic_id, partition_index) AS topics,
             array_agg(partition_index ORDER BY topic_id, partition_index) AS indexes
      FROM txn_partitions GROUP BY transactional_id) p
WHERE t.transactional_id = p.transactional_id;

-- Where the open transaction of producer_id starts in a partition: the offset of its first
-- stored batch there. The primary key leads with the partition, for the last stable
-- offset's lookup.
CREATE TABLE txn_starts (
    topic_id        uuid NOT NULL,
    partition_index integer NOT NULL,
    producer_id     bigint NOT NULL,
    first_offset    bigint NOT NULL,
    PRIMARY KEY (topic_id, partition_index, producer_id)
);

INSERT INTO txn_starts (topic_id, partition_index, producer_id, first_offset)
SELECT p.topic_id, p.partition_index, t.producer_id, p.first_offset
FROM txn_partitions p JOIN transactions t USING (transactional_id)
WHERE p.first_offset IS NOT NULL;

DROP TABLE txn_partitions;
