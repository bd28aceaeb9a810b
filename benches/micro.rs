//! Micro-benchmarks of the pure pieces on the server's hot paths, through the library's
//! public API: parsing a browser's `GET /chat`, encoding the one broadcast response, and
//! the timer wheel every parked poll sits in. `cargo bench --bench micro`.
//!
//! These say what one step costs in isolation; `benches/load.rs` says what the whole server
//! does with 19,500 connections. A regression shows here first and smaller.

use comet_chat::answer;
use comet_chat::http::{self, Limits, Parse, Status};
use comet_chat::timer::TimerWheel;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use std::hint::black_box;

/// What Chrome sends for the page's long poll: the request line and the usual dozen
/// headers, about 600 bytes.
const BROWSER_GET_CHAT: &[u8] = b"GET /chat HTTP/1.1\r\n\
Host: localhost:8080\r\n\
Connection: keep-alive\r\n\
sec-ch-ua: \"Chromium\";v=\"124\", \"Google Chrome\";v=\"124\", \"Not-A.Brand\";v=\"99\"\r\n\
sec-ch-ua-mobile: ?0\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36\r\n\
sec-ch-ua-platform: \"Linux\"\r\n\
Accept: */*\r\n\
Sec-Fetch-Site: same-origin\r\n\
Sec-Fetch-Mode: cors\r\n\
Sec-Fetch-Dest: empty\r\n\
Referer: http://localhost:8080/\r\n\
Accept-Encoding: gzip, deflate, br, zstd\r\n\
Accept-Language: en-GB,en;q=0.9\r\n\
\r\n";

/// Timers in the wheel benchmarks: about what one server holds at the top of the ladder.
const TIMERS: usize = 10_000;

/// Deadlines spread over this many ticks (20 s at 10 ms), like poll timeouts that started
/// over a 20-second window.
const SPREAD_TICKS: u64 = 2_000;

fn parse(c: &mut Criterion) {
    let limits = Limits::default();
    let mut group = c.benchmark_group("http");
    group.throughput(Throughput::Bytes(BROWSER_GET_CHAT.len() as u64));
    group.bench_function("parse_request/browser GET /chat", |b| {
        b.iter(|| {
            let parsed = http::parse_request(black_box(BROWSER_GET_CHAT), &limits);
            debug_assert!(matches!(parsed, Parse::Complete(_)));
            parsed
        })
    });
    let body =
        br#"{"ok":"a chat line of about the length people type, give or take a word or two"}"#;
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function("encode_response/200 JSON", |b| {
        b.iter(|| answer::response(Status::OK, answer::JSON, &[], black_box(body), false))
    });
    group.finish();
}

fn broadcast(c: &mut Criterion) {
    // 100 bytes with a quote and a non-ASCII character, so escaping is exercised.
    let message: String =
        "Hello \"everyone\", this is a chat message of exactly one hundred bytes… \
                           padded to length"
            .chars()
            .chain(std::iter::repeat('x'))
            .scan(0, |len, ch| {
                *len += ch.len_utf8();
                (*len <= 100).then_some(ch)
            })
            .collect();
    let mut group = c.benchmark_group("chat");
    group.throughput(Throughput::Bytes(message.len() as u64));
    group.bench_function("message_response/100-byte message", |b| {
        b.iter(|| answer::classic_message(black_box(&message)))
    });
    group.finish();
}

fn timers(c: &mut Criterion) {
    // Deadlines in a fixed pseudo-random order, so insertion is not accidentally sorted.
    let deadlines: Vec<u64> = (0..TIMERS as u64)
        .map(|i| 1 + (i * 7_919) % SPREAD_TICKS)
        .collect();
    let mut group = c.benchmark_group("timer");
    group.throughput(Throughput::Elements(TIMERS as u64));
    group.bench_function("insert+expire 10k", |b| {
        b.iter_batched(
            || (TimerWheel::<(u32, u32)>::new(), Vec::with_capacity(TIMERS)),
            |(mut wheel, mut fired)| {
                for (i, &deadline) in deadlines.iter().enumerate() {
                    wheel.insert(deadline, (i as u32, 1));
                }
                wheel.expire(SPREAD_TICKS, &mut fired);
                debug_assert_eq!(fired.len(), TIMERS);
                (wheel, fired)
            },
            BatchSize::SmallInput,
        )
    });
    group.bench_function("insert+cancel 10k", |b| {
        b.iter_batched(
            || (TimerWheel::<(u32, u32)>::new(), Vec::with_capacity(TIMERS)),
            |(mut wheel, mut ids)| {
                for (i, &deadline) in deadlines.iter().enumerate() {
                    ids.push(wheel.insert(deadline, (i as u32, 1)));
                }
                // Cancelled in insertion order, as broadcasts answer waiters in park order.
                for &id in &ids {
                    black_box(wheel.cancel(id));
                }
                debug_assert!(wheel.is_empty());
                (wheel, ids)
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, parse, broadcast, timers);
criterion_main!(benches);
