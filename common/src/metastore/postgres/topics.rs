//! Topics and their partitions.

use std::collections::BTreeMap;

use uuid::Uuid;

use super::{PgMetastore, pg_error};
use crate::error::StoreError;
use crate::metastore::model::*;

impl PgMetastore {
    /// Creates a topic with its partitions and configs in one transaction.
    /// Returns `None` when a topic with that name already exists.
    pub(super) async fn insert_topic(
        &self,
        name: &str,
        partition_count: i32,
        configs: &BTreeMap<String, Option<String>>,
    ) -> Result<Option<TopicMeta>, StoreError> {
        let topic_id = Uuid::new_v4();
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_error)?;
        // Expects: no topic of that name (the unique name makes a racing create a no-op).
        let inserted = tx
            .execute(
                "INSERT INTO topics (topic_id, name, partition_count) VALUES ($1, $2, $3)
                 ON CONFLICT (name) DO NOTHING",
                &[&topic_id, &name, &partition_count],
            )
            .await
            .map_err(pg_error)?;
        if inserted == 0 {
            return Ok(None);
        }
        tx.execute(
            "INSERT INTO partitions (topic_id, partition_index)
             SELECT $1, generate_series(0, $2 - 1)",
            &[&topic_id, &partition_count],
        )
        .await
        .map_err(pg_error)?;
        let keys: Vec<&str> = configs.keys().map(String::as_str).collect();
        let values: Vec<Option<&str>> = configs.values().map(|v| v.as_deref()).collect();
        tx.execute(
            "INSERT INTO topic_configs (topic_id, key, value)
             SELECT $1, k, v FROM unnest($2::text[], $3::text[]) AS c(k, v)",
            &[&topic_id, &keys, &values],
        )
        .await
        .map_err(pg_error)?;
        tx.commit().await.map_err(pg_error)?;
        Ok(Some(TopicMeta {
            topic_id,
            name: name.to_owned(),
            partition_count,
            configs: configs.clone(),
        }))
    }

    /// Topics by name and/or id; `None` for both lists every topic.
    pub(super) async fn query_topics(
        &self,
        names: Option<&[String]>,
        ids: Option<&[Uuid]>,
    ) -> Result<Vec<TopicMeta>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT t.topic_id, t.name, t.partition_count,
                        coalesce(array_agg(c.key) FILTER (WHERE c.key IS NOT NULL), '{}'),
                        coalesce(array_agg(c.value) FILTER (WHERE c.key IS NOT NULL), '{}')
                 FROM topics t LEFT JOIN topic_configs c USING (topic_id)
                 WHERE ($1::text[] IS NULL OR t.name = ANY($1))
                   AND ($2::uuid[] IS NULL OR t.topic_id = ANY($2))
                 GROUP BY t.topic_id ORDER BY t.name",
                &[&names, &ids],
            )
            .await
            .map_err(pg_error)?;
        let mut topics = Vec::with_capacity(rows.len());
        for row in rows {
            let keys: Vec<String> = row.get(3);
            let values: Vec<Option<String>> = row.get(4);
            topics.push(TopicMeta {
                topic_id: row.get(0),
                name: row.get(1),
                partition_count: row.get(2),
                configs: keys.into_iter().zip(values).collect(),
            });
        }
        Ok(topics)
    }

    /// Deletes a topic, its partitions and index rows. Its objects become unreferenced and
    /// are collected by the compactor after the grace period. Returns false when absent.
    pub(super) async fn remove_topic(&self, topic_id: Uuid) -> Result<bool, StoreError> {
        let client = self.client().await?;
        // Expects: the topic exists; partitions and index rows go with it (ON DELETE CASCADE).
        let deleted = client
            .execute("DELETE FROM topics WHERE topic_id = $1", &[&topic_id])
            .await
            .map_err(pg_error)?;
        Ok(deleted > 0)
    }
}
