-- Kafka ACL bindings (issue 22), Kafka's codes: resource type (2 topic, 3 group,
-- 4 cluster, 5 transactional id, ...), pattern type (3 literal, 4 prefixed), operation,
-- permission (2 deny, 3 allow). A binding is its whole row: creating one twice keeps one.
-- Changes are announced on the `yaks_acls` channel so every gateway reloads its cache.
CREATE TABLE acls (
    resource_type  smallint NOT NULL,
    resource_name  text     NOT NULL,
    pattern_type   smallint NOT NULL CHECK (pattern_type IN (3, 4)),
    principal      text     NOT NULL,
    host           text     NOT NULL,
    operation      smallint NOT NULL,
    permission     smallint NOT NULL CHECK (permission IN (2, 3)),
    PRIMARY KEY (resource_type, resource_name, pattern_type, principal, host, operation,
                 permission)
);
