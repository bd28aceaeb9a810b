//! Arbitrary bytes, split at arbitrary points, through the request path of one connection
//! (`routes::next`, exactly as `Server::process_input` calls it), with the invariants of
//! tests/common/request_path.rs checked at every step.
//!
//! Input layout: the first byte says how many split points follow (up to 15); each split
//! point is one byte, a chunk length. The rest is the bytes the client sent. The first two
//! bytes after the split points pick the head and body caps, so the fuzzer explores small
//! caps too.

#![no_main]

use comet_chat::http::Limits;
use libfuzzer_sys::fuzz_target;

#[path = "../../tests/common/request_path.rs"]
mod request_path;

fuzz_target!(|data: &[u8]| {
    let Some((&count, rest)) = data.split_first() else {
        return;
    };
    let count = (count % 16) as usize;
    if rest.len() < count + 2 {
        return;
    }
    let (lengths, rest) = rest.split_at(count);
    let limits = Limits {
        head_bytes: 32 + rest[0] as usize * 32,
        body_bytes: 1 + rest[1] as usize * 16,
        ..Limits::default()
    };
    let mut payload = &rest[2..];
    let mut chunks = Vec::new();
    for &length in lengths {
        let take = (length as usize).min(payload.len());
        let (chunk, tail) = payload.split_at(take);
        chunks.push(chunk);
        payload = tail;
    }
    chunks.push(payload);
    request_path::run(&chunks, &limits);
});
