//! The groups domain: what the metastore keeps of consumer groups ([`Groups`]), and the
//! binary form of their members.
//!
//! The coordinating gateway holds a group's live membership; the metastore keeps the last
//! generation that became Stable or Empty ([`StoredGroup`]), committed offsets
//! ([`CommittedOffset`]) and a coordinator epoch per group that fences a gateway that
//! lost the group ([`GroupWrite::Fenced`]). Members are stored as one binary column whose
//! encoding is here, shared by both backends and tested on its own.

use async_trait::async_trait;
use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::error::StoreError;

/// Consumer groups' generations and committed offsets, each write fenced by the group's
/// coordinator epoch.
#[async_trait]
pub trait Groups: Send + Sync + 'static {
    /// Takes over a consumer group as its coordinator: bumps the group's coordinator epoch
    /// (fencing the previous coordinator's writes) and returns it with the last recorded
    /// generation.
    async fn claim_group(&self, group_id: &str) -> Result<GroupClaim, StoreError>;

    /// Records a generation of a group, if `epoch` is still the group's coordinator epoch.
    async fn store_group(
        &self,
        epoch: i64,
        group: &StoredGroup,
        now_ms: i64,
    ) -> Result<GroupWrite, StoreError>;

    /// Stores committed offsets (replacing earlier ones of the same partitions), if `epoch`
    /// is still the group's coordinator epoch; a group with no recorded generation gets an
    /// empty one, so it is listed.
    async fn commit_offsets(
        &self,
        group_id: &str,
        epoch: i64,
        offsets: &[CommittedOffset],
        now_ms: i64,
    ) -> Result<GroupWrite, StoreError>;

    /// Committed offsets of a group, by topic and partition; `None` returns all of them.
    /// Partitions without a commit are absent.
    async fn fetch_offsets(
        &self,
        group_id: &str,
        partitions: Option<&[(String, i32)]>,
    ) -> Result<Vec<CommittedOffset>, StoreError>;

    /// Deletes committed offsets of some partitions, if `epoch` is still current.
    async fn delete_offsets(
        &self,
        group_id: &str,
        epoch: i64,
        partitions: &[(String, i32)],
    ) -> Result<GroupWrite, StoreError>;

    /// Deletes a group's recorded generation and offsets, if `epoch` is still current;
    /// [`GroupWrite::NotFound`] when it has neither.
    async fn delete_group(&self, group_id: &str, epoch: i64) -> Result<GroupWrite, StoreError>;

    /// Every group with a recorded generation, by id.
    async fn list_groups(&self) -> Result<Vec<GroupListing>, StoreError>;
}

/// A consumer group as its coordinator last recorded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredGroup {
    /// Group id.
    pub group_id: String,
    /// Generation.
    pub generation: i32,
    /// Protocol type (`consumer` for consumers); `None` while empty.
    pub protocol_type: Option<String>,
    /// Chosen protocol (assignor).
    pub protocol_name: Option<String>,
    /// Leader's member id.
    pub leader: Option<String>,
    /// Members with their assignments; empty for an Empty group.
    pub members: Vec<StoredMember>,
}

/// One member of a [`StoredGroup`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMember {
    /// Member id.
    pub member_id: String,
    /// `group.instance.id` of a static member.
    pub instance_id: Option<String>,
    /// Client id.
    pub client_id: String,
    /// Client host.
    pub client_host: String,
    /// Rebalance timeout.
    pub rebalance_timeout_ms: i32,
    /// Session timeout.
    pub session_timeout_ms: i32,
    /// Protocols with their metadata, in preference order.
    pub protocols: Vec<(String, Bytes)>,
    /// The member's assignment.
    pub assignment: Bytes,
}

/// The fencing rule of every group write: the writer must hold the group's current
/// coordinator epoch, the one its last [`Groups::claim_group`] returned. Only an exact match
/// holds: a smaller epoch was taken over by another coordinator, and no epoch is ever
/// larger than the recorded one, since only claims make them. Both backends apply it under
/// the group's lock, before anything of the write is stored.
pub fn holds_epoch(recorded: Option<i64>, epoch: i64) -> bool {
    recorded == Some(epoch)
}

/// One committed offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    /// Topic name.
    pub topic: String,
    /// Partition.
    pub partition_index: i32,
    /// The offset.
    pub offset: i64,
    /// Leader epoch the client gave (-1: none).
    pub leader_epoch: i32,
    /// Client metadata.
    pub metadata: Option<String>,
}

/// A group as ListGroups shows it when its coordinator has not loaded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupListing {
    /// Group id.
    pub group_id: String,
    /// Protocol type; empty for groups with offsets only.
    pub protocol_type: String,
    /// Whether the last recorded generation had members.
    pub has_members: bool,
}

/// What a coordinator gets when it takes over a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupClaim {
    /// The coordinator epoch this gateway now holds; later writes name it.
    pub epoch: i64,
    /// The last recorded generation, if any.
    pub group: Option<StoredGroup>,
}

/// The outcome of a coordinator's write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupWrite {
    /// Written.
    Done,
    /// Another gateway claimed the group since; nothing was written.
    Fenced,
    /// The group does not exist (deletes only).
    NotFound,
}

/// A malformed stored member list.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed stored group members: {0}")]
pub struct MembersError(&'static str);

fn put_str(buf: &mut BytesMut, s: &str) {
    put_bytes(buf, s.as_bytes());
}

fn put_bytes(buf: &mut BytesMut, b: &[u8]) {
    buf.put_u32(u32::try_from(b.len()).unwrap_or(u32::MAX));
    buf.put_slice(b);
}

/// Encodes members for the `consumer_groups.members` column: a version byte, a count, then
/// per member its strings and byte strings each prefixed with a u32 length.
pub fn encode_members(members: &[StoredMember]) -> Bytes {
    let mut buf = BytesMut::new();
    buf.put_u8(1);
    buf.put_u32(u32::try_from(members.len()).unwrap_or(u32::MAX));
    for m in members {
        put_str(&mut buf, &m.member_id);
        match &m.instance_id {
            Some(instance) => {
                buf.put_u8(1);
                put_str(&mut buf, instance);
            }
            None => buf.put_u8(0),
        }
        put_str(&mut buf, &m.client_id);
        put_str(&mut buf, &m.client_host);
        buf.put_i32(m.rebalance_timeout_ms);
        buf.put_i32(m.session_timeout_ms);
        buf.put_u32(u32::try_from(m.protocols.len()).unwrap_or(u32::MAX));
        for (name, metadata) in &m.protocols {
            put_str(&mut buf, name);
            put_bytes(&mut buf, metadata);
        }
        put_bytes(&mut buf, &m.assignment);
    }
    buf.freeze()
}

fn get_bytes(buf: &mut Bytes) -> Result<Bytes, MembersError> {
    if buf.remaining() < 4 {
        return Err(MembersError("truncated length"));
    }
    let len = buf.get_u32() as usize;
    if buf.remaining() < len {
        return Err(MembersError("truncated bytes"));
    }
    Ok(buf.split_to(len))
}

fn get_str(buf: &mut Bytes) -> Result<String, MembersError> {
    String::from_utf8(get_bytes(buf)?.to_vec()).map_err(|_| MembersError("not UTF-8"))
}

fn get_count(buf: &mut Bytes) -> Result<usize, MembersError> {
    if buf.remaining() < 4 {
        return Err(MembersError("truncated count"));
    }
    let count = buf.get_u32() as usize;
    // Every element takes at least four bytes: no count can promise more than that.
    if count > buf.remaining() / 4 {
        return Err(MembersError("count larger than the data"));
    }
    Ok(count)
}

/// Decodes [`encode_members`]' output.
pub fn decode_members(mut buf: Bytes) -> Result<Vec<StoredMember>, MembersError> {
    if buf.remaining() < 1 || buf.get_u8() != 1 {
        return Err(MembersError("unknown version"));
    }
    let count = get_count(&mut buf)?;
    let mut members = Vec::with_capacity(count);
    for _ in 0..count {
        let member_id = get_str(&mut buf)?;
        if buf.remaining() < 1 {
            return Err(MembersError("truncated member"));
        }
        let instance_id = match buf.get_u8() {
            0 => None,
            _ => Some(get_str(&mut buf)?),
        };
        let client_id = get_str(&mut buf)?;
        let client_host = get_str(&mut buf)?;
        if buf.remaining() < 8 {
            return Err(MembersError("truncated timeouts"));
        }
        let rebalance_timeout_ms = buf.get_i32();
        let session_timeout_ms = buf.get_i32();
        let protocol_count = get_count(&mut buf)?;
        let mut protocols = Vec::with_capacity(protocol_count);
        for _ in 0..protocol_count {
            protocols.push((get_str(&mut buf)?, get_bytes(&mut buf)?));
        }
        let assignment = get_bytes(&mut buf)?;
        members.push(StoredMember {
            member_id,
            instance_id,
            client_id,
            client_host,
            rebalance_timeout_ms,
            session_timeout_ms,
            protocols,
            assignment,
        });
    }
    if buf.has_remaining() {
        return Err(MembersError("trailing bytes"));
    }
    Ok(members)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: &str, instance: Option<&str>) -> StoredMember {
        StoredMember {
            member_id: id.into(),
            instance_id: instance.map(Into::into),
            client_id: "rdkafka".into(),
            client_host: "/127.0.0.1".into(),
            rebalance_timeout_ms: 300_000,
            session_timeout_ms: 45_000,
            protocols: vec![
                ("range".into(), Bytes::from_static(b"\x00\x01topic")),
                ("roundrobin".into(), Bytes::new()),
            ],
            assignment: Bytes::from_static(b"\x00\x00assigned"),
        }
    }

    #[test]
    fn only_the_current_coordinator_epoch_writes() {
        assert!(holds_epoch(Some(3), 3));
        assert!(!holds_epoch(Some(4), 3), "taken over");
        assert!(!holds_epoch(None, 3), "never claimed");
    }

    #[test]
    fn members_round_trip_and_corruption_is_an_error() {
        let members = vec![member("a-1", None), member("b-2", Some("static-b"))];
        let encoded = encode_members(&members);
        assert_eq!(decode_members(encoded.clone()), Ok(members));
        assert_eq!(decode_members(encode_members(&[])), Ok(vec![]));
        for cut in 0..encoded.len() {
            assert!(
                decode_members(encoded.slice(..cut)).is_err(),
                "cut at {cut}"
            );
        }
        assert!(decode_members(Bytes::from_static(&[1, 0xff, 0xff, 0xff, 0xff])).is_err());
    }
}
