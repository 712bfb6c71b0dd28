//! AlterUserScramCredentials (key 51), v0: create, replace and delete users' SCRAM
//! credentials, which is how Kafka's admin clients manage SASL/SCRAM users.
//!
//! The client salts the password itself (the request carries salt, iterations and the
//! salted password); the gateway derives and stores only the stored and server keys
//! ([`yaks_common::scram::Credential::from_salted_password`]). Kafka's checks, one result
//! per user: a user named twice in one request gets DUPLICATE_RESOURCE for all of its
//! entries; an empty name or an iteration count outside 4096..=16384 UNACCEPTABLE_CREDENTIAL;
//! an unknown mechanism UNSUPPORTED_SASL_MECHANISM; deleting a credential that does not
//! exist RESOURCE_NOT_FOUND. A user's entries apply only if all of them pass.

use std::collections::BTreeMap;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::alter_user_scram_credentials_response::AlterUserScramCredentialsResult;
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse,
};
use tracing::{info, warn};
use yaks_common::acl::Operation;
use yaks_common::kafka::str_bytes;
use yaks_common::scram::{Credential, MAX_ITERATIONS, MIN_ITERATIONS, Mechanism};

use super::{RequestContext, Versions};

/// Supported versions.
pub const VERSIONS: Versions = Versions { min: 0, max: 0 };

/// One change asked for.
enum Change {
    Delete(Mechanism),
    Upsert(Credential),
}

type Refusal = (ResponseError, String);

/// Answers AlterUserScramCredentials.
pub async fn handle(
    context: RequestContext,
    request: AlterUserScramCredentialsRequest,
) -> AlterUserScramCredentialsResponse {
    // Users in order of first mention, each with its checked changes or why not.
    let mut users: BTreeMap<String, (usize, Result<Vec<Change>, Refusal>)> = BTreeMap::new();
    let mut order = 0;
    let entries = request
        .deletions
        .iter()
        .map(|d| (d.name.to_string(), check_deletion(d.mechanism)))
        .chain(request.upsertions.iter().map(|u| {
            let checked = check_upsertion(u.mechanism, u.iterations, &u.salt, &u.salted_password);
            (u.name.to_string(), checked)
        }));
    for (user, checked) in entries {
        let slot = users.entry(user.clone()).or_insert_with(|| {
            order += 1;
            (order, Ok(Vec::new()))
        });
        match (&mut slot.1, checked) {
            // Kafka: a user altered twice in one request fails whole.
            (Ok(changes), _) if !changes.is_empty() => {
                slot.1 = Err(duplicate());
            }
            (Ok(changes), Ok(change)) => changes.push(change),
            (Ok(_), Err(refusal)) => slot.1 = Err(refusal),
            (Err(_), _) => slot.1 = Err(duplicate()),
        }
        if user.is_empty() && slot.1.is_ok() {
            slot.1 = Err((
                ResponseError::UnacceptableCredential,
                "Username must not be empty".into(),
            ));
        }
    }
    let mut ordered: Vec<(String, usize, Result<Vec<Change>, Refusal>)> = users
        .into_iter()
        .map(|(user, (order, changes))| (user, order, changes))
        .collect();
    ordered.sort_by_key(|(_, order, _)| *order);

    let store = &context.state.metastore;
    let mut results = Vec::new();
    // As Kafka: ALTER on the cluster, else every user fails with
    // CLUSTER_AUTHORIZATION_FAILED.
    let allowed = context.allowed_on_cluster(Operation::Alter);
    for (user, _, changes) in ordered {
        let outcome = match changes {
            _ if !allowed => Err((
                ResponseError::ClusterAuthorizationFailed,
                "Cluster authorization failed.".into(),
            )),
            Err(refusal) => Err(refusal),
            Ok(changes) => apply(store.as_ref(), &user, changes).await,
        };
        let result = AlterUserScramCredentialsResult::default().with_user(str_bytes(&user));
        results.push(match outcome {
            Ok(()) => {
                info!(user, "scram credentials altered");
                result
            }
            Err((error, message)) => result
                .with_error_code(error.code())
                .with_error_message(Some(str_bytes(&message))),
        });
    }
    AlterUserScramCredentialsResponse::default().with_results(results)
}

async fn apply(
    store: &dyn crate::GatewayStore,
    user: &str,
    changes: Vec<Change>,
) -> Result<(), Refusal> {
    let failed = |e: yaks_common::error::StoreError| {
        warn!(user, error = %e, "altering scram credentials failed");
        (
            ResponseError::UnknownServerError,
            "storing the credential failed".to_owned(),
        )
    };
    for change in changes {
        match change {
            Change::Upsert(credential) => store
                .upsert_scram_credential(user, &credential)
                .await
                .map_err(failed)?,
            Change::Delete(mechanism) => {
                if !store
                    .delete_scram_credential(user, mechanism)
                    .await
                    .map_err(failed)?
                {
                    return Err((
                        ResponseError::ResourceNotFound,
                        "Attempt to delete a user credential that does not exist".into(),
                    ));
                }
            }
        }
    }
    Ok(())
}

fn duplicate() -> Refusal {
    (
        ResponseError::DuplicateResource,
        "A user credential cannot be altered twice in the same request".into(),
    )
}

fn mechanism(code: i8) -> Result<Mechanism, Refusal> {
    Mechanism::from_code(code).ok_or_else(|| {
        (
            ResponseError::UnsupportedSaslMechanism,
            "Unknown SCRAM mechanism".into(),
        )
    })
}

fn check_deletion(code: i8) -> Result<Change, Refusal> {
    Ok(Change::Delete(mechanism(code)?))
}

fn check_upsertion(
    code: i8,
    iterations: i32,
    salt: &[u8],
    salted_password: &[u8],
) -> Result<Change, Refusal> {
    let mechanism = mechanism(code)?;
    if iterations < MIN_ITERATIONS {
        return Err((
            ResponseError::UnacceptableCredential,
            "Too few iterations".into(),
        ));
    }
    if iterations > MAX_ITERATIONS {
        return Err((
            ResponseError::UnacceptableCredential,
            "Too many iterations".into(),
        ));
    }
    if salt.is_empty() || salted_password.len() != mechanism.hash_len() {
        return Err((
            ResponseError::UnacceptableCredential,
            "The salt must not be empty and the salted password must be as long as the \
             mechanism's hash"
                .into(),
        ));
    }
    Ok(Change::Upsert(Credential::from_salted_password(
        mechanism,
        salted_password,
        salt.to_vec(),
        iterations,
    )))
}
