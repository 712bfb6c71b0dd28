//! The credentials domain: users' SCRAM credentials, which SASL `SCRAM-SHA-256`,
//! `SCRAM-SHA-512` and `PLAIN` logins are checked against (salted and hashed, never a
//! password: [`crate::scram`]).
//!
//! Gateways read a user's credentials when a connection authenticates, and write them for
//! AlterUserScramCredentials; `yaks user` writes them directly, which is how the first
//! user of a cluster is made.

use async_trait::async_trait;

use crate::error::StoreError;
use crate::scram::{Credential, Mechanism};

/// Users' SCRAM credentials.
#[async_trait]
pub trait Credentials: Send + Sync + 'static {
    /// `user`'s credentials, one per mechanism it has (none: no such user).
    async fn scram_credentials(&self, user: &str) -> Result<Vec<Credential>, StoreError>;

    /// Every user's credentials, or those of `users`, by user name then mechanism.
    async fn list_scram_credentials(
        &self,
        users: Option<&[String]>,
    ) -> Result<Vec<(String, Credential)>, StoreError>;

    /// Sets `user`'s credential for its mechanism, replacing one there was.
    async fn upsert_scram_credential(
        &self,
        user: &str,
        credential: &Credential,
    ) -> Result<(), StoreError>;

    /// Removes `user`'s credential for `mechanism`; false when it had none.
    async fn delete_scram_credential(
        &self,
        user: &str,
        mechanism: Mechanism,
    ) -> Result<bool, StoreError>;
}
