//! Request decoding as the gateway does it, on arbitrary bytes: a frame (the bytes after
//! the 4-byte length) goes through the header checks of `connection::parse_head`, then its
//! body through the decoder its handler uses, and Produce batches through the gateway's
//! batch validation. Whatever the input, this must return: no panic, no abort, and no
//! allocation out of proportion to the input (`scripts/fuzz` caps malloc at 256 MiB while
//! inputs are at most 64 KiB).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut frame = bytes::Bytes::copy_from_slice(data);
    if let Ok(head) = yaks_gateway::connection::parse_head(&mut frame) {
        let _ = yaks_gateway::handlers::decode_body(head.api_key, head.version, frame);
    }
});
