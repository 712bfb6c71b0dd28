//! The reader role: serves Fetch from S3 through a hybrid memory/disk cache.
//!
//! Not built yet (issue "The read path"). Until then the gateway serves Fetch itself,
//! straight from the index and S3 (`yaks_gateway::handlers::fetch`). Planned modules:
//! - `planner`: which index entries and byte ranges answer a fetch;
//! - `cache`: foyer hybrid cache keyed by (object, aligned block), one GET per miss;
//! - `tail`: in-memory index of recent commits, fed by PostgreSQL NOTIFY;
//! - `server`: the internal HTTP endpoint gateways call, with long-polling.
