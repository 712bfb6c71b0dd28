//! [`Credentials`] in memory.

use async_trait::async_trait;

use crate::error::StoreError;
use crate::scram::{Credential, Mechanism};

use super::super::credentials::Credentials;
use super::MemoryMetastore;

#[async_trait]
impl Credentials for MemoryMetastore {
    async fn scram_credentials(&self, user: &str) -> Result<Vec<Credential>, StoreError> {
        let state = self.state();
        Ok(state
            .credentials
            .range((user.to_owned(), Mechanism::Sha256)..=(user.to_owned(), Mechanism::Sha512))
            .map(|(_, c)| c.clone())
            .collect())
    }

    async fn list_scram_credentials(
        &self,
        users: Option<&[String]>,
    ) -> Result<Vec<(String, Credential)>, StoreError> {
        let state = self.state();
        Ok(state
            .credentials
            .iter()
            .filter(|((user, _), _)| users.is_none_or(|users| users.contains(user)))
            .map(|((user, _), c)| (user.clone(), c.clone()))
            .collect())
    }

    async fn upsert_scram_credential(
        &self,
        user: &str,
        credential: &Credential,
    ) -> Result<(), StoreError> {
        self.state()
            .credentials
            .insert((user.to_owned(), credential.mechanism), credential.clone());
        Ok(())
    }

    async fn delete_scram_credential(
        &self,
        user: &str,
        mechanism: Mechanism,
    ) -> Result<bool, StoreError> {
        Ok(self
            .state()
            .credentials
            .remove(&(user.to_owned(), mechanism))
            .is_some())
    }
}
