//! ApiVersions (key 18), v0–v4: which APIs and versions this gateway speaks.
//!
//! Generated from [`super::HANDLERS`]. Only the fields of the negotiated version are
//! encoded; in particular the v3+ tagged fields keep their defaults and are therefore
//! omitted, as Apache Kafka does (librdkafka 2.0.2, in Debian's kcat, fails otherwise).

use bytes::Bytes;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse};
use yaks_common::kafka;

use super::{HANDLERS, RequestContext, Versions};

/// Supported versions.
pub const VERSIONS: Versions = Versions { min: 0, max: 4 };

fn api_keys() -> Vec<ApiVersion> {
    HANDLERS
        .iter()
        .map(|(key, versions)| {
            ApiVersion::default()
                .with_api_key(*key as i16)
                .with_min_version(versions.min)
                .with_max_version(versions.max)
        })
        .collect()
}

/// Answers ApiVersions.
pub async fn handle(context: RequestContext, request: ApiVersionsRequest) -> ApiVersionsResponse {
    let _ = (context, request);
    response()
}

/// The answer, which does not depend on the request (also given before authentication).
pub fn response() -> ApiVersionsResponse {
    ApiVersionsResponse::default().with_api_keys(api_keys())
}

/// The v0 body sent when a client asks for a newer ApiVersions than we speak.
pub fn unsupported_version_body() -> Bytes {
    let response = ApiVersionsResponse::default()
        .with_error_code(ResponseError::UnsupportedVersion.code())
        .with_api_keys(api_keys());
    kafka::encode(&response, 0).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v3_answer_carries_no_top_level_tagged_fields() {
        let response = ApiVersionsResponse::default().with_api_keys(api_keys());
        let bytes = kafka::encode(&response, 3).expect("encodes");
        // error_code, compact array, throttle_time_ms, then the tagged-field count.
        assert_eq!(*bytes.last().expect("non-empty"), 0, "no tagged fields");
        let decoded: ApiVersionsResponse = kafka::decode(bytes, 3).expect("decodes");
        assert_eq!(decoded.api_keys.len(), HANDLERS.len());
    }
}
