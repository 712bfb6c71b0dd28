//! [`Topics`] on PostgreSQL: `topics`, `topic_configs` and the partitions they own.

use std::collections::BTreeMap;

use uuid::Uuid;

use async_trait::async_trait;

use crate::error::StoreError;
use crate::metastore::model::*;

use super::super::topics::Topics;
use super::{PgMetastore, pg_error};

#[async_trait]
impl Topics for PgMetastore {
    /// Creates a topic with its partitions and configs in one transaction.
    /// Returns `None` when a topic with that name already exists.
    async fn create_topic(
        &self,
        name: &str,
        partition_count: i32,
        configs: &BTreeMap<String, Option<String>>,
    ) -> Result<Option<TopicMeta>, StoreError> {
        let topic_id = crate::random::uuid();
        let mut client = self.client("create_topic").await?;
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
        insert_configs(&tx, topic_id, configs).await?;
        tx.commit().await.map_err(pg_error)?;
        Ok(Some(TopicMeta {
            topic_id,
            name: name.to_owned(),
            partition_count,
            configs: configs.clone(),
        }))
    }

    async fn set_topic_configs(
        &self,
        topic_id: Uuid,
        configs: &BTreeMap<String, Option<String>>,
    ) -> Result<bool, StoreError> {
        let mut client = self.client("set_topic_configs").await?;
        let tx = client.transaction().await.map_err(pg_error)?;
        // Expects: the topic exists; its row lock orders concurrent alterations.
        let found = tx
            .query_opt(
                "SELECT 1 FROM topics WHERE topic_id = $1 FOR UPDATE",
                &[&topic_id],
            )
            .await
            .map_err(pg_error)?;
        if found.is_none() {
            return Ok(false);
        }
        tx.execute(
            "DELETE FROM topic_configs WHERE topic_id = $1",
            &[&topic_id],
        )
        .await
        .map_err(pg_error)?;
        insert_configs(&tx, topic_id, configs).await?;
        tx.commit().await.map_err(pg_error)?;
        Ok(true)
    }

    async fn add_partitions(
        &self,
        topic_id: Uuid,
        partition_count: i32,
    ) -> Result<Option<i32>, StoreError> {
        let mut client = self.client("add_partitions").await?;
        let tx = client.transaction().await.map_err(pg_error)?;
        // Expects: the topic exists with fewer partitions; its row lock orders concurrent
        // growth.
        let Some(row) = tx
            .query_opt(
                "SELECT partition_count FROM topics WHERE topic_id = $1 FOR UPDATE",
                &[&topic_id],
            )
            .await
            .map_err(pg_error)?
        else {
            return Ok(None);
        };
        let before: i32 = row.get(0);
        if partition_count <= before {
            return Err(StoreError::Invalid(format!(
                "the topic has {before} partitions; {partition_count} would not add any"
            )));
        }
        tx.execute(
            "INSERT INTO partitions (topic_id, partition_index)
             SELECT $1, generate_series($2::int, $3::int - 1)",
            &[&topic_id, &before, &partition_count],
        )
        .await
        .map_err(pg_error)?;
        tx.execute(
            "UPDATE topics SET partition_count = $2 WHERE topic_id = $1",
            &[&topic_id, &partition_count],
        )
        .await
        .map_err(pg_error)?;
        tx.commit().await.map_err(pg_error)?;
        Ok(Some(before))
    }

    async fn topics(&self, names: Option<&[String]>) -> Result<Vec<TopicMeta>, StoreError> {
        self.query_topics(names, None).await
    }

    async fn topics_by_id(&self, ids: &[Uuid]) -> Result<Vec<TopicMeta>, StoreError> {
        self.query_topics(None, Some(ids)).await
    }

    /// Deletes a topic, its partitions and index rows. Its objects become unreferenced and
    /// are collected by the compactor after the grace period. Returns false when absent.
    async fn delete_topic(&self, topic_id: Uuid) -> Result<bool, StoreError> {
        let mut client = self.client("delete_topic").await?;
        let tx = client.transaction().await.map_err(pg_error)?;
        // Committed offsets go with the topic, as in Kafka.
        tx.execute(
            "DELETE FROM group_offsets
             WHERE topic = (SELECT name FROM topics WHERE topic_id = $1)",
            &[&topic_id],
        )
        .await
        .map_err(pg_error)?;
        // Expects: the topic exists; partitions and index rows go with it (ON DELETE CASCADE).
        let deleted = tx
            .execute("DELETE FROM topics WHERE topic_id = $1", &[&topic_id])
            .await
            .map_err(pg_error)?;
        // Where open transactions start in its partitions, which have no foreign key
        // (migration V11). After the partitions' rows are gone: a flush commit that
        // waited for their locks finds them deleted and stores nothing there.
        tx.execute("DELETE FROM txn_starts WHERE topic_id = $1", &[&topic_id])
            .await
            .map_err(pg_error)?;
        tx.commit().await.map_err(pg_error)?;
        Ok(deleted > 0)
    }
}

impl PgMetastore {
    /// Topics by name and/or id; `None` for both lists every topic.
    async fn query_topics(
        &self,
        names: Option<&[String]>,
        ids: Option<&[Uuid]>,
    ) -> Result<Vec<TopicMeta>, StoreError> {
        let client = self.client("query_topics").await?;
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
}

/// Writes a topic's explicit configs (after its old ones were deleted, or for a new topic).
async fn insert_configs(
    tx: &deadpool_postgres::Transaction<'_>,
    topic_id: Uuid,
    configs: &BTreeMap<String, Option<String>>,
) -> Result<(), StoreError> {
    let keys: Vec<&str> = configs.keys().map(String::as_str).collect();
    let values: Vec<Option<&str>> = configs.values().map(|v| v.as_deref()).collect();
    tx.execute(
        "INSERT INTO topic_configs (topic_id, key, value)
         SELECT $1, k, v FROM unnest($2::text[], $3::text[]) AS c(k, v)",
        &[&topic_id, &keys, &values],
    )
    .await
    .map_err(pg_error)?;
    Ok(())
}
