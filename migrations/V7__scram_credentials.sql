-- SASL/SCRAM credentials (issue 22): one row per user and mechanism (1 SCRAM-SHA-256,
-- 2 SCRAM-SHA-512, Kafka's type codes). Only the salt, the iteration count and the keys
-- derived from the salted password are kept, never the password (RFC 5802); PLAIN logins
-- are checked against the same rows.
CREATE TABLE scram_credentials (
    user_name   text     NOT NULL,
    mechanism   smallint NOT NULL CHECK (mechanism IN (1, 2)),
    salt        bytea    NOT NULL,
    iterations  integer  NOT NULL CHECK (iterations > 0),
    stored_key  bytea    NOT NULL,
    server_key  bytea    NOT NULL,
    PRIMARY KEY (user_name, mechanism)
);
