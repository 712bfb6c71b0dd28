-- yaks metastore, first schema. Applied by `yaks migrate` and at start-up by refinery,
-- serialised across processes by a PostgreSQL advisory lock.

-- One row: the cluster's identity, reported to clients in Metadata.
CREATE TABLE cluster (
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    cluster_id text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO cluster (cluster_id) VALUES (replace(gen_random_uuid()::text, '-', ''));

CREATE TABLE topics (
    topic_id        uuid PRIMARY KEY,
    name            text NOT NULL UNIQUE,
    partition_count integer NOT NULL CHECK (partition_count > 0),
    created_at      timestamptz NOT NULL DEFAULT now()
);

-- Only the configs a client set explicitly; defaults are the code's.
CREATE TABLE topic_configs (
    topic_id uuid NOT NULL REFERENCES topics ON DELETE CASCADE,
    key      text NOT NULL,
    value    text,
    PRIMARY KEY (topic_id, key)
);

-- next_offset is the high watermark: the offset the next committed batch gets.
CREATE TABLE partitions (
    topic_id         uuid NOT NULL REFERENCES topics ON DELETE CASCADE,
    partition_index  integer NOT NULL CHECK (partition_index >= 0),
    next_offset      bigint NOT NULL DEFAULT 0 CHECK (next_offset >= 0),
    log_start_offset bigint NOT NULL DEFAULT 0 CHECK (log_start_offset >= 0),
    PRIMARY KEY (topic_id, partition_index)
);

-- Every object a writer committed. state: live -> marked (no longer referenced, waiting out
-- the grace period) -> row deleted once the S3 object is gone.
CREATE TABLE objects (
    object_id  text PRIMARY KEY,
    object_key text NOT NULL,
    size_bytes bigint NOT NULL CHECK (size_bytes >= 0),
    state      text NOT NULL DEFAULT 'live' CHECK (state IN ('live', 'marked')),
    created_at timestamptz NOT NULL DEFAULT now(),
    marked_at  timestamptz
);

-- One row per partition per object: the partition's batches in that object are one
-- contiguous byte range holding offsets base_offset..=last_offset.
CREATE TABLE object_index (
    topic_id        uuid NOT NULL,
    partition_index integer NOT NULL,
    base_offset     bigint NOT NULL,
    last_offset     bigint NOT NULL,
    max_timestamp   bigint NOT NULL,
    object_id       text NOT NULL REFERENCES objects,
    byte_offset     bigint NOT NULL CHECK (byte_offset >= 0),
    byte_length     bigint NOT NULL CHECK (byte_length > 0),
    batch_count     integer NOT NULL CHECK (batch_count > 0),
    PRIMARY KEY (topic_id, partition_index, base_offset),
    FOREIGN KEY (topic_id, partition_index) REFERENCES partitions ON DELETE CASCADE,
    CHECK (last_offset >= base_offset)
);
CREATE INDEX object_index_by_object ON object_index (object_id);

-- Live processes. node_id doubles as the Kafka broker id of gateways.
CREATE TABLE services (
    node_id          serial PRIMARY KEY,
    role             text NOT NULL,
    instance_id      text NOT NULL UNIQUE,
    address          text NOT NULL,
    lease_expires_at timestamptz NOT NULL
);
CREATE INDEX services_by_role ON services (role, lease_expires_at);
