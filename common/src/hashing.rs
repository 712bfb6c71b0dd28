//! Rendezvous (highest-random-weight) hashing.
//!
//! Used wherever every process must pick the same member for a key without talking to the
//! others: the gateway that leads a partition, the reader that caches it, later the
//! coordinator of a group. The hash is spelled out here (not `std`'s `DefaultHasher`, whose
//! output may change between Rust releases) so processes built apart still agree.

/// 64-bit FNV-1a over `bytes`, then a splitmix64 finaliser for better spread.
pub fn stable_hash(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    mix(hash)
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The member with the highest weight for `key`; `None` when there are no members.
pub fn rendezvous<'a, T>(key: &[u8], members: &'a [T], id: impl Fn(&T) -> i64) -> Option<&'a T> {
    let key_hash = stable_hash(key);
    members
        .iter()
        .max_by_key(|m| (mix(key_hash ^ mix(id(m) as u64)), id(m)))
}

/// Every member, highest weight for `key` first: the owner, then who takes over if it fails.
pub fn rendezvous_order<'a, T>(key: &[u8], members: &'a [T], id: impl Fn(&T) -> i64) -> Vec<&'a T> {
    let key_hash = stable_hash(key);
    let mut ranked: Vec<(u64, i64, &T)> = members
        .iter()
        .map(|m| (mix(key_hash ^ mix(id(m) as u64)), id(m), m))
        .collect();
    ranked.sort_by_key(|&(weight, id, _)| std::cmp::Reverse((weight, id)));
    ranked.into_iter().map(|(_, _, m)| m).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choice_is_stable_and_moves_little_when_a_member_leaves() {
        let members: Vec<i64> = (1..=4).collect();
        let fewer: Vec<i64> = vec![1, 2, 4];
        let mut moved = 0;
        for key in 0..1000u32 {
            let key = key.to_be_bytes();
            let before = *rendezvous(&key, &members, |m| *m).expect("some");
            let after = *rendezvous(&key, &fewer, |m| *m).expect("some");
            if before != 3 {
                assert_eq!(before, after, "only keys of the departed member move");
            } else {
                moved += 1;
            }
        }
        assert!(
            (150..350).contains(&moved),
            "about a quarter of keys moved: {moved}"
        );
    }

    #[test]
    fn order_starts_with_the_rendezvous_choice() {
        let members: Vec<i64> = (1..=5).collect();
        for key in 0..100u32 {
            let key = key.to_be_bytes();
            let order = rendezvous_order(&key, &members, |m| *m);
            assert_eq!(order.len(), 5);
            assert_eq!(order[0], rendezvous(&key, &members, |m| *m).expect("some"));
        }
    }
}
