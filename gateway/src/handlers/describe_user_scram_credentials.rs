//! DescribeUserScramCredentials (key 50), v0: which users have SCRAM credentials, for
//! which mechanisms and with how many iterations; never a salt or a key.
//!
//! As Kafka: all users when the list is null; a listed user without credentials gets
//! RESOURCE_NOT_FOUND, a user listed twice DUPLICATE_RESOURCE.

use std::collections::{BTreeMap, HashMap};

use kafka_protocol::ResponseError;
use kafka_protocol::messages::describe_user_scram_credentials_response::{
    CredentialInfo, DescribeUserScramCredentialsResult,
};
use kafka_protocol::messages::{
    DescribeUserScramCredentialsRequest, DescribeUserScramCredentialsResponse,
};
use tracing::warn;
use yaks_common::acl::Operation;
use yaks_common::kafka::str_bytes;

use super::{RequestContext, Versions};

/// Supported versions.
pub const VERSIONS: Versions = Versions { min: 0, max: 0 };

/// Answers DescribeUserScramCredentials.
pub async fn handle(
    context: RequestContext,
    request: DescribeUserScramCredentialsRequest,
) -> DescribeUserScramCredentialsResponse {
    if !context.allowed_on_cluster(Operation::Describe) {
        // As Kafka's error response: the error at the top and, without a name, for each
        // user asked about.
        let error = ResponseError::ClusterAuthorizationFailed.code();
        let message = Some(str_bytes("Cluster authorization failed."));
        let results = request
            .users
            .iter()
            .flatten()
            .map(|_| {
                DescribeUserScramCredentialsResult::default()
                    .with_error_code(error)
                    .with_error_message(message.clone())
            })
            .collect();
        return DescribeUserScramCredentialsResponse::default()
            .with_error_code(error)
            .with_error_message(message)
            .with_results(results);
    }
    let asked: Option<Vec<String>> = request
        .users
        .map(|users| users.into_iter().map(|u| u.name.to_string()).collect());
    let stored = match context
        .state
        .metastore
        .list_scram_credentials(asked.as_deref())
        .await
    {
        Ok(stored) => stored,
        Err(e) => {
            warn!(error = %e, "reading scram credentials failed");
            return DescribeUserScramCredentialsResponse::default()
                .with_error_code(ResponseError::UnknownServerError.code())
                .with_error_message(Some(str_bytes("reading credentials failed")));
        }
    };
    let mut by_user: BTreeMap<String, Vec<CredentialInfo>> = BTreeMap::new();
    for (user, credential) in stored {
        by_user.entry(user).or_default().push(
            CredentialInfo::default()
                .with_mechanism(credential.mechanism.code())
                .with_iterations(credential.iterations),
        );
    }
    let Some(asked) = asked else {
        let results = by_user
            .into_iter()
            .map(|(user, infos)| {
                DescribeUserScramCredentialsResult::default()
                    .with_user(str_bytes(&user))
                    .with_credential_infos(infos)
            })
            .collect();
        return DescribeUserScramCredentialsResponse::default().with_results(results);
    };
    let mut times: HashMap<&str, usize> = HashMap::new();
    for user in &asked {
        *times.entry(user.as_str()).or_default() += 1;
    }
    let mut results = Vec::new();
    let mut answered = std::collections::HashSet::new();
    for user in &asked {
        if !answered.insert(user.as_str()) {
            continue;
        }
        let result = DescribeUserScramCredentialsResult::default().with_user(str_bytes(user));
        let result = if times[user.as_str()] > 1 {
            result
                .with_error_code(ResponseError::DuplicateResource.code())
                .with_error_message(Some(str_bytes(
                    "Cannot describe SCRAM credentials for the same user twice in a single request",
                )))
        } else {
            match by_user.remove(user) {
                Some(infos) => result.with_credential_infos(infos),
                None => result
                    .with_error_code(ResponseError::ResourceNotFound.code())
                    .with_error_message(Some(str_bytes(&format!(
                        "Attempt to describe a user credential that does not exist: {user}"
                    )))),
            }
        };
        results.push(result);
    }
    DescribeUserScramCredentialsResponse::default().with_results(results)
}
