//! Progress on stderr: `say!` prints one line stamped with the seconds since the run
//! began, so a long run shows where it is and a stuck one shows where it stuck. Shared by
//! the load and million benchmarks (declared first, with `#[macro_use]`).

use std::sync::OnceLock;
use std::time::Instant;

/// When the run began, for the progress stamps.
static START: OnceLock<Instant> = OnceLock::new();

/// Seconds since the run began (the first call).
pub fn elapsed_secs() -> f64 {
    START.get_or_init(Instant::now).elapsed().as_secs_f64()
}

/// Prints one progress line on stderr, stamped with the seconds since the run began.
macro_rules! say {
    ($($arg:tt)*) => {
        eprintln!(
            "[{:7.1} s] {}",
            $crate::progress::elapsed_secs(),
            format!($($arg)*)
        )
    };
}
