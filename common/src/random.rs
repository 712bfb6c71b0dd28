//! Randomness: the one place the code draws random numbers or ids.
//!
//! Ids and jitter come from here rather than from ambient calls (`clippy.toml` bans
//! `Uuid::new_v4` and `rand`'s global generators elsewhere), so what a process draws is
//! visible in one file and could be seeded from one place for a reproducible test.

use rand::Rng;
use uuid::Uuid;

/// A random (version 4) UUID: topic ids, instance ids, member ids.
pub fn uuid() -> Uuid {
    #[allow(clippy::disallowed_methods)]
    Uuid::new_v4()
}

/// A random 128-bit number.
pub fn u128() -> u128 {
    #[allow(clippy::disallowed_methods)]
    rand::rng().random()
}

/// A random 64-bit number.
pub fn u64() -> u64 {
    #[allow(clippy::disallowed_methods)]
    rand::rng().random()
}
