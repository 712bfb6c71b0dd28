-- Consumer groups (classic protocol): who coordinates each group, what its coordinator last
-- recorded of it, and its committed offsets. Membership changes live in the coordinating
-- gateway's memory; a generation is written here when it becomes Stable (with every
-- member's assignment) or Empty, so the next coordinator carries on from it.

-- Each gateway that takes over a group bumps its epoch; every later write by a coordinator
-- names the epoch it holds and is refused once another gateway has claimed the group, so a
-- gateway that lost the group (a stale view of who is alive) cannot overwrite its state.
CREATE TABLE group_coordinators (
    group_id text PRIMARY KEY,
    epoch    bigint NOT NULL CHECK (epoch > 0)
);

-- The last recorded generation. members is a binary list of the members with their
-- protocols and assignments (encoding in common/src/metastore/model.rs, `encode_members`).
-- A group that only ever had standalone offset commits has generation 0 and no members.
CREATE TABLE consumer_groups (
    group_id      text PRIMARY KEY,
    generation    integer NOT NULL CHECK (generation >= 0),
    protocol_type text,
    protocol_name text,
    leader_id     text,
    members       bytea NOT NULL,
    updated_ms    bigint NOT NULL
);

-- Committed offsets, by topic name as clients name them (OffsetCommit v2-v9). Deleting a
-- topic deletes its offsets, as Kafka does.
CREATE TABLE group_offsets (
    group_id         text NOT NULL,
    topic            text NOT NULL,
    partition_index  integer NOT NULL,
    committed_offset bigint NOT NULL,
    leader_epoch     integer NOT NULL,
    metadata         text,
    commit_ms        bigint NOT NULL,
    PRIMARY KEY (group_id, topic, partition_index)
);
CREATE INDEX group_offsets_by_topic ON group_offsets (topic);
