//! Everything a user can tune: [`Config`], what the rest of the crate reads, and the
//! defaults a newcomer gets from `cargo run`. Tests build a `Config` directly with short
//! timeouts; the binary gets one from the command line, which the modules below own:
//!
//! - `settings` — [`Config`] itself and its defaults.
//! - `flags` — [`FLAGS`], the one table of flags: what each is typed as, what it accepts,
//!   and the field it sets. [`parse_args`] reads the command line through it and [`usage()`]
//!   prints `--help` from it, so the two cannot disagree.
//! - `parse` — the command line into a `Config`, one flag at a time: lexopt, seconds,
//!   whole numbers within their bounds, and the flag's name in front of every error.
//! - `check` — the rules between flags (`--max-message` within `--max-body`, `--workers`
//!   needs `--redis`, ...), checked once every flag is read, whatever their order.
//! - `origin` — `--cors-origin`'s value, held to the spelling browsers send.
//! - `usage` — the `--help` text, wrapped, made from the table and nothing else.
//!
//! Everything public is re-exported here, so users name `config::FLAGS`, never the module
//! that holds it.

mod check;
mod flags;
mod origin;
mod parse;
mod settings;
mod usage;

pub use check::worker_admin_port;
pub use flags::{Bounds, Flag, Kind, Unit, FLAGS, SECONDS, WORKERS_MAX};
pub use parse::{parse_args, Command};
pub use settings::{Config, Www, RESERVED_DESCRIPTORS};
pub use usage::{usage, USAGE_COLUMNS};
