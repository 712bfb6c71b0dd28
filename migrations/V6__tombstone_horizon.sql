-- Key compaction: the earliest delete horizon among the tombstones a partition's last pass
-- kept (NULL: none). A compacted partition with nothing new to judge is still passed over
-- once this time comes, so its tombstones go delete.retention.ms after they were first
-- kept, as in Kafka, whether or not anything is produced to it.
ALTER TABLE partitions ADD COLUMN tombstones_due_ms bigint;
