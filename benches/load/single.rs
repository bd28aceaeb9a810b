//! Post → delivery latency with one parked client: the server's best case, and what a
//! quiet chat room feels like. Many rounds, each one waiting (through `/stats`) until the
//! poll is parked again before posting, so every round starts from the same state.

use crate::dist::Dist;
use crate::ladder::Ctx;
use crate::pool::Pool;
use crate::wire;
use std::time::{Duration, Instant};

/// Time to connect the one client and see it parked.
const PARK_CAP: Duration = Duration::from_secs(10);
/// Time for one delivery (the answer takes microseconds; this means trouble).
const DELIVERY_CAP: Duration = Duration::from_secs(5);
/// The whole phase, whatever the round count.
const PHASE_CAP: Duration = Duration::from_secs(60);

/// What the one-subscriber phase measured.
pub struct Single {
    /// Rounds attempted.
    pub rounds: usize,
    /// Post → delivery, per delivered round.
    pub latency: Dist,
    /// Rounds without the expected delivery, or not parked again.
    pub errors: usize,
    /// The first problem, if any.
    pub first_error: Option<String>,
}

/// Runs the phase on its own server; `label` names the CPU placement in progress lines.
pub fn run(ctx: &mut Ctx<'_>, label: &str) -> Result<Single, String> {
    let rounds = ctx.options.single_rounds;
    say!(
        "one subscriber ({label}): {}, {rounds} rounds",
        ctx.server_verb()
    );
    let mut target = ctx.target().map_err(|e| e.to_string())?;
    let base = target.stats().map_err(|e| e.to_string())?;
    ctx.server_limit = Some(base.open_files_limit);
    let phase_deadline = ctx.phase_deadline(PHASE_CAP);
    let park_deadline = ctx.phase_deadline(PARK_CAP);
    let (mut pool, opened) = Pool::open(
        1,
        target.addr,
        &mut ctx.sources,
        Some(wire::GET_CHAT),
        park_deadline,
    )
    .map_err(|e| e.to_string())?;
    if opened.open != 1 {
        return Err(format!("cannot connect: {:?}", opened.first_error));
    }
    let mut single = Single {
        rounds: 0,
        latency: Dist::default(),
        errors: 0,
        first_error: None,
    };
    let mut latencies = Vec::with_capacity(rounds);
    let nonce = std::process::id();
    for round in 0..rounds {
        if Instant::now() >= phase_deadline {
            single
                .first_error
                .get_or_insert(format!("out of time after {round} rounds"));
            break;
        }
        let deadline = ctx.phase_deadline(PARK_CAP);
        let parked = target
            .wait_until(deadline, |s| s.pending_polls > base.pending_polls)
            .map_err(|e| e.to_string())?;
        if !parked.2 {
            single.errors += 1;
            single
                .first_error
                .get_or_insert("the poll was not parked again".into());
            break;
        }
        let token = format!("one-r{round}-{nonce}");
        let message = wire::message(&token, ctx.options.message_bytes);
        single.rounds += 1;
        let posted = target.post(&message).map_err(|e| e.to_string())?;
        let got = pool.receive(
            &wire::needle(&token, ctx.options.message_bytes),
            ctx.phase_deadline(DELIVERY_CAP),
        );
        target.finish_post().map_err(|e| e.to_string())?;
        match got.times.first() {
            Some(&at) if got.errors() == 0 => latencies.push(at - posted),
            _ => {
                single.errors += 1;
                if let Some(e) = got.first_error {
                    single.first_error.get_or_insert(e);
                }
            }
        }
        if pool.send_all(wire::GET_CHAT) > 0 {
            single.errors += 1;
            single.first_error.get_or_insert("cannot poll again".into());
            break;
        }
    }
    drop(pool);
    target.stop();
    single.latency = Dist::of(&mut latencies);
    say!(
        "one subscriber ({label}): post→delivery p50 {:.1} µs, p99 {:.1} µs, max {:.1} µs, {} errors",
        single.latency.p50_us,
        single.latency.p99_us,
        single.latency.max_us,
        single.errors
    );
    Ok(single)
}
