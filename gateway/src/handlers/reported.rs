//! The error each response reports, for the request metrics
//! (`yaks_gateway_requests_total{error=...}`).
//!
//! A response's error is its top-level error code when it has one and it is set, else the
//! first non-zero error of its topics, partitions, groups or resources, else 0. One
//! response that failed for one partition of many counts as that error: what an operator
//! wants to see is that such answers are being given.

use kafka_protocol::messages::*;

/// A response that can say which error it carries.
pub trait Reported {
    /// The error code to count this response under (0: none).
    fn reported_error(&self) -> i16;
}

/// The first non-zero code, or 0.
fn first(codes: impl IntoIterator<Item = i16>) -> i16 {
    codes.into_iter().find(|code| *code != 0).unwrap_or(0)
}

/// Responses whose only error is at the top.
macro_rules! top_level {
    ($($response:ty),* $(,)?) => {
        $(impl Reported for $response {
            fn reported_error(&self) -> i16 {
                self.error_code
            }
        })*
    };
}

top_level!(
    JoinGroupResponse,
    HeartbeatResponse,
    SyncGroupResponse,
    ListGroupsResponse,
    ApiVersionsResponse,
    InitProducerIdResponse,
    SaslHandshakeResponse,
    SaslAuthenticateResponse,
    DescribeAclsResponse,
    AddOffsetsToTxnResponse,
    EndTxnResponse,
    ListTransactionsResponse,
);

impl Reported for AddPartitionsToTxnResponse {
    fn reported_error(&self) -> i16 {
        let topics = self.results_by_topic_v3_and_below.iter().chain(
            self.results_by_transaction
                .iter()
                .flat_map(|t| &t.topic_results),
        );
        first(
            std::iter::once(self.error_code).chain(topics.flat_map(|topic| {
                topic
                    .results_by_partition
                    .iter()
                    .map(|p| p.partition_error_code)
            })),
        )
    }
}

impl Reported for DescribeUserScramCredentialsResponse {
    fn reported_error(&self) -> i16 {
        first(std::iter::once(self.error_code).chain(self.results.iter().map(|r| r.error_code)))
    }
}

/// Responses whose errors are per entry of one list (`results`, `topics`, ...).
macro_rules! per_entry {
    ($($response:ty => $list:ident),* $(,)?) => {
        $(impl Reported for $response {
            fn reported_error(&self) -> i16 {
                first(self.$list.iter().map(|entry| entry.error_code))
            }
        })*
    };
}

per_entry!(
    DescribeGroupsResponse => groups,
    CreateTopicsResponse => topics,
    DeleteTopicsResponse => responses,
    DescribeConfigsResponse => results,
    AlterConfigsResponse => responses,
    CreatePartitionsResponse => results,
    DeleteGroupsResponse => results,
    IncrementalAlterConfigsResponse => responses,
    AlterUserScramCredentialsResponse => results,
    CreateAclsResponse => results,
    DeleteAclsResponse => filter_results,
    DescribeTransactionsResponse => transaction_states,
);

/// Responses whose errors are per partition of each topic.
macro_rules! per_partition {
    ($($response:ty => $topics:ident . $partitions:ident),* $(,)?) => {
        $(impl Reported for $response {
            fn reported_error(&self) -> i16 {
                first(self.$topics.iter().flat_map(|topic| {
                    topic.$partitions.iter().map(|partition| partition.error_code)
                }))
            }
        })*
    };
}

per_partition!(
    ProduceResponse => responses.partition_responses,
    ListOffsetsResponse => topics.partitions,
    OffsetCommitResponse => topics.partitions,
    DeleteRecordsResponse => topics.partitions,
    OffsetForLeaderEpochResponse => topics.partitions,
    TxnOffsetCommitResponse => topics.partitions,
);

impl Reported for FetchResponse {
    fn reported_error(&self) -> i16 {
        first(
            std::iter::once(self.error_code).chain(
                self.responses
                    .iter()
                    .flat_map(|topic| topic.partitions.iter().map(|p| p.error_code)),
            ),
        )
    }
}

impl Reported for MetadataResponse {
    fn reported_error(&self) -> i16 {
        first(self.topics.iter().flat_map(|topic| {
            std::iter::once(topic.error_code).chain(topic.partitions.iter().map(|p| p.error_code))
        }))
    }
}

impl Reported for FindCoordinatorResponse {
    fn reported_error(&self) -> i16 {
        first(
            std::iter::once(self.error_code).chain(self.coordinators.iter().map(|c| c.error_code)),
        )
    }
}

impl Reported for LeaveGroupResponse {
    fn reported_error(&self) -> i16 {
        first(std::iter::once(self.error_code).chain(self.members.iter().map(|m| m.error_code)))
    }
}

impl Reported for OffsetFetchResponse {
    fn reported_error(&self) -> i16 {
        // v0–v7 answer one group at the top level, v8+ a list of groups.
        let single = std::iter::once(self.error_code).chain(
            self.topics
                .iter()
                .flat_map(|topic| topic.partitions.iter().map(|p| p.error_code)),
        );
        let groups = self.groups.iter().flat_map(|group| {
            std::iter::once(group.error_code).chain(
                group
                    .topics
                    .iter()
                    .flat_map(|topic| topic.partitions.iter().map(|p| p.error_code)),
            )
        });
        first(single.chain(groups))
    }
}

impl Reported for OffsetDeleteResponse {
    fn reported_error(&self) -> i16 {
        first(
            std::iter::once(self.error_code).chain(
                self.topics
                    .iter()
                    .flat_map(|topic| topic.partitions.iter().map(|p| p.error_code)),
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::produce_response::{
        PartitionProduceResponse, TopicProduceResponse,
    };

    #[test]
    fn the_first_partition_error_is_reported() {
        let ok = PartitionProduceResponse::default();
        let failed = PartitionProduceResponse::default().with_error_code(3);
        let response = ProduceResponse::default().with_responses(vec![
            TopicProduceResponse::default().with_partition_responses(vec![ok.clone()]),
            TopicProduceResponse::default().with_partition_responses(vec![ok, failed]),
        ]);
        assert_eq!(response.reported_error(), 3);
        assert_eq!(ProduceResponse::default().reported_error(), 0);
    }
}
