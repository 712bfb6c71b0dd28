//! [`Credentials`] on PostgreSQL: the `scram_credentials` table.

use async_trait::async_trait;
use tokio_postgres::Row;

use crate::error::StoreError;
use crate::scram::{Credential, Mechanism};

use super::super::credentials::Credentials;
use super::{PgMetastore, pg_error};

const COLUMNS: &str = "user_name, mechanism, salt, iterations, stored_key, server_key";

fn credential(row: &Row) -> Result<(String, Credential), StoreError> {
    let code: i16 = row.get(1);
    let mechanism = Mechanism::from_code(code as i8)
        .ok_or_else(|| StoreError::Internal(format!("unknown SCRAM mechanism {code}")))?;
    Ok((
        row.get(0),
        Credential {
            mechanism,
            salt: row.get(2),
            iterations: row.get(3),
            stored_key: row.get(4),
            server_key: row.get(5),
        },
    ))
}

#[async_trait]
impl Credentials for PgMetastore {
    async fn scram_credentials(&self, user: &str) -> Result<Vec<Credential>, StoreError> {
        let client = self.client("scram_credentials").await?;
        let rows = client
            .query(
                &format!(
                    "SELECT {COLUMNS} FROM scram_credentials WHERE user_name = $1 \
                     ORDER BY mechanism"
                ),
                &[&user],
            )
            .await
            .map_err(pg_error)?;
        rows.iter()
            .map(|row| credential(row).map(|(_, c)| c))
            .collect()
    }

    async fn list_scram_credentials(
        &self,
        users: Option<&[String]>,
    ) -> Result<Vec<(String, Credential)>, StoreError> {
        let client = self.client("list_scram_credentials").await?;
        let rows = match users {
            None => {
                client
                    .query(
                        &format!("SELECT {COLUMNS} FROM scram_credentials ORDER BY 1, 2"),
                        &[],
                    )
                    .await
            }
            Some(users) => {
                client
                    .query(
                        &format!(
                            "SELECT {COLUMNS} FROM scram_credentials \
                         WHERE user_name = ANY($1) ORDER BY 1, 2"
                        ),
                        &[&users],
                    )
                    .await
            }
        }
        .map_err(pg_error)?;
        rows.iter().map(credential).collect()
    }

    async fn upsert_scram_credential(
        &self,
        user: &str,
        credential: &Credential,
    ) -> Result<(), StoreError> {
        let client = self.client("upsert_scram_credential").await?;
        // Expects nothing: a user's credential for the mechanism is created or replaced.
        client
            .execute(
                "INSERT INTO scram_credentials
                     (user_name, mechanism, salt, iterations, stored_key, server_key)
                 VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (user_name, mechanism) DO UPDATE
                 SET salt = EXCLUDED.salt, iterations = EXCLUDED.iterations,
                     stored_key = EXCLUDED.stored_key, server_key = EXCLUDED.server_key",
                &[
                    &user,
                    &i16::from(credential.mechanism.code()),
                    &credential.salt,
                    &credential.iterations,
                    &credential.stored_key,
                    &credential.server_key,
                ],
            )
            .await
            .map_err(pg_error)?;
        Ok(())
    }

    async fn delete_scram_credential(
        &self,
        user: &str,
        mechanism: Mechanism,
    ) -> Result<bool, StoreError> {
        let client = self.client("delete_scram_credential").await?;
        let deleted = client
            .execute(
                "DELETE FROM scram_credentials WHERE user_name = $1 AND mechanism = $2",
                &[&user, &i16::from(mechanism.code())],
            )
            .await
            .map_err(pg_error)?;
        Ok(deleted > 0)
    }
}
