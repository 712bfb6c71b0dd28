//! Reading the `consumer` protocol's subscription metadata.
//!
//! Group members' protocol metadata is opaque to the coordinator except in one place:
//! OffsetDelete must refuse to delete offsets of a topic the group's consumers subscribe
//! to (GROUP_SUBSCRIBED_TO_TOPIC). The metadata is a version (i16) followed by a
//! ConsumerProtocolSubscription of that version; later versions only append fields, so
//! a newer one is read as the newest this crate knows.

use bytes::{Buf, Bytes};
use kafka_protocol::messages::ConsumerProtocolSubscription;
use yaks_common::kafka;

/// Newest ConsumerProtocolSubscription version the protocol crate decodes.
const NEWEST: i16 = 3;

/// Topics a member's `consumer` metadata subscribes to; `None` when it does not parse.
pub fn subscribed_topics(mut metadata: Bytes) -> Option<Vec<String>> {
    if metadata.remaining() < 2 {
        return None;
    }
    let version = metadata.get_i16();
    if version < 0 {
        return None;
    }
    let subscription: ConsumerProtocolSubscription =
        kafka::decode(metadata, version.min(NEWEST)).ok()?;
    Some(
        subscription
            .topics
            .iter()
            .map(|t| t.as_str().to_owned())
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use bytes::{BufMut, BytesMut};
    use kafka_protocol::protocol::Encodable;

    use super::*;

    #[test]
    fn reads_topics_of_every_version_and_refuses_garbage() {
        for version in 0..=NEWEST + 1 {
            let subscription = ConsumerProtocolSubscription::default().with_topics(vec![
                kafka::str_bytes("orders"),
                kafka::str_bytes("payments"),
            ]);
            let mut buf = BytesMut::new();
            buf.put_i16(version);
            subscription
                .encode(&mut buf, version.min(NEWEST))
                .expect("encode");
            assert_eq!(
                subscribed_topics(buf.freeze()),
                Some(vec!["orders".to_owned(), "payments".to_owned()])
            );
        }
        assert_eq!(subscribed_topics(Bytes::from_static(&[0])), None);
        assert_eq!(
            subscribed_topics(Bytes::from_static(&[0, 0, 0xff, 0xff, 0xff])),
            None
        );
    }
}
