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

#[path = "../split.rs"]
mod split;

fuzz_target!(|data: &[u8]| {
    let Some(input) = split::split(data) else {
        return;
    };
    let limits = Limits {
        head_bytes: 32 + input.params[0] as usize * 32,
        body_bytes: 1 + input.params[1] as usize * 16,
        ..Limits::default()
    };
    request_path::run(&input.chunks, &limits);
});
