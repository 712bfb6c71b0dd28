//! [`AclBindings`] on PostgreSQL: the `acls` table, changes announced on
//! [`ACL_CHANNEL`](super::super::acls::ACL_CHANNEL).

use async_trait::async_trait;
use tokio_postgres::Row;

use crate::acl::{AclBinding, AclFilter, Operation, PatternType, Permission, ResourceType};
use crate::error::StoreError;

use super::super::acls::{ACL_CHANNEL, AclBindings};
use super::log::{Follow, listen};
use super::{PgMetastore, pg_error};

const COLUMNS: &str =
    "resource_type, resource_name, pattern_type, principal, host, operation, permission";

fn binding(row: &Row) -> Result<AclBinding, StoreError> {
    let code = |index: usize| -> i8 { row.get::<_, i16>(index) as i8 };
    let bad = |what: &str| StoreError::Internal(format!("acls row with an unknown {what}"));
    Ok(AclBinding {
        resource_type: ResourceType::from_code(code(0)).ok_or_else(|| bad("resource type"))?,
        resource_name: row.get(1),
        pattern_type: PatternType::from_code(code(2)).ok_or_else(|| bad("pattern type"))?,
        principal: row.get(3),
        host: row.get(4),
        operation: Operation::from_code(code(5)).ok_or_else(|| bad("operation"))?,
        permission: Permission::from_code(code(6)).ok_or_else(|| bad("permission"))?,
    })
}

/// The bindings passed as [`columns`], one row each.
const UNNEST: &str = "unnest($1::smallint[], $2::text[], $3::smallint[], $4::text[], \
                      $5::text[], $6::smallint[], $7::smallint[])";

/// The bindings as the arrays of one `unnest`.
type Columns = (
    Vec<i16>,
    Vec<String>,
    Vec<i16>,
    Vec<String>,
    Vec<String>,
    Vec<i16>,
    Vec<i16>,
);

fn columns(bindings: &[AclBinding]) -> Columns {
    let mut columns = Columns::default();
    for b in bindings {
        columns.0.push(i16::from(b.resource_type.code()));
        columns.1.push(b.resource_name.clone());
        columns.2.push(i16::from(b.pattern_type.code()));
        columns.3.push(b.principal.clone());
        columns.4.push(b.host.clone());
        columns.5.push(i16::from(b.operation.code()));
        columns.6.push(i16::from(b.permission.code()));
    }
    columns
}

#[async_trait]
impl AclBindings for PgMetastore {
    async fn list_acls(&self) -> Result<Vec<AclBinding>, StoreError> {
        let client = self.client("list_acls").await?;
        let rows = client
            .query(&format!("SELECT {COLUMNS} FROM acls"), &[])
            .await
            .map_err(pg_error)?;
        // Sorted here, not by the database's collation: the same order as the memory store.
        let mut bindings = rows.iter().map(binding).collect::<Result<Vec<_>, _>>()?;
        bindings.sort();
        Ok(bindings)
    }

    async fn create_acls(&self, bindings: &[AclBinding]) -> Result<(), StoreError> {
        let mut client = self.client("create_acls").await?;
        let c = columns(bindings);
        let tx = client.transaction().await.map_err(pg_error)?;
        // Expects nothing: a binding already there is kept as it is.
        tx.execute(
            &format!(
                "INSERT INTO acls ({COLUMNS})
                 SELECT * FROM {UNNEST}
                 ON CONFLICT DO NOTHING"
            ),
            &[&c.0, &c.1, &c.2, &c.3, &c.4, &c.5, &c.6],
        )
        .await
        .map_err(pg_error)?;
        tx.execute("SELECT pg_notify($1, 'changed')", &[&ACL_CHANNEL])
            .await
            .map_err(pg_error)?;
        tx.commit().await.map_err(pg_error)
    }

    async fn delete_acls(&self, filter: &AclFilter) -> Result<Vec<AclBinding>, StoreError> {
        let mut client = self.client("delete_acls").await?;
        let tx = client.transaction().await.map_err(pg_error)?;
        // The filter's rule is Rust's: every row is read and locked, so what it selected is
        // what is deleted; a binding created meanwhile is not selected, as if it came after.
        let rows = tx
            .query(&format!("SELECT {COLUMNS} FROM acls FOR UPDATE"), &[])
            .await
            .map_err(pg_error)?;
        let mut selected = Vec::new();
        for row in &rows {
            let binding = binding(row)?;
            if filter.selects(&binding) {
                selected.push(binding);
            }
        }
        if !selected.is_empty() {
            let c = columns(&selected);
            tx.execute(
                &format!("DELETE FROM acls WHERE ({COLUMNS}) IN (SELECT * FROM {UNNEST})"),
                &[&c.0, &c.1, &c.2, &c.3, &c.4, &c.5, &c.6],
            )
            .await
            .map_err(pg_error)?;
            tx.execute("SELECT pg_notify($1, 'changed')", &[&ACL_CHANNEL])
                .await
                .map_err(pg_error)?;
        }
        tx.commit().await.map_err(pg_error)?;
        selected.sort();
        Ok(selected)
    }

    async fn acl_changes(&self) -> Result<tokio::sync::mpsc::Receiver<()>, StoreError> {
        // One slot: a change already signalled and not yet read covers the next ones.
        let (sender, receiver) = tokio::sync::mpsc::channel(1);
        let listening = listen(&self.pg_config, self.tls.as_ref(), ACL_CHANNEL).await?;
        let follow = Follow {
            config: self.pg_config.clone(),
            tls: self.tls.clone(),
            channel: ACL_CHANNEL,
            event: |_| (),
            gap: (),
        };
        tokio::spawn(follow.run(listening, sender));
        Ok(receiver)
    }
}
