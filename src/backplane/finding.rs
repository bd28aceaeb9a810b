//! With `--redis redis+sentinel://`: finding the master before connecting. The Sentinels
//! are asked one at a time on a connection of their own in the loop (the pure parts,
//! `Sentinels` and `Asking`, are in `sentinel.rs`); one that answers nothing in time, or
//! cannot help, is passed over; the master it names is opened as a direct URL's would be.

use super::sentinel::{self, Asking, Found};
use super::url::Target;
use super::{resp, Backplane, Incoming, Phase};
use std::time::Duration;

impl<T> Backplane<T> {
    /// While a Sentinel is being asked: how long it has left to answer.
    pub fn sentinel_time_left(&self) -> Option<Duration> {
        let asking = self.asking.as_ref()?;
        Some(sentinel::SENTINEL_ANSWER.saturating_sub(asking.since.elapsed()))
    }

    /// Asks the next Sentinel of this round; Err once every one has been asked.
    pub(super) fn ask_next(&mut self, registry: &mio::Registry) -> Result<(), String> {
        self.asking = None;
        let Some(sentinels) = self.sentinels.as_mut() else {
            return Err("no Sentinel to ask".into());
        };
        let mut why = String::new();
        while let Some(addr) = sentinels.next_to_ask() {
            let caps = resp::Caps {
                frame_bytes: sentinel::SENTINEL_REPLY_BYTES,
                depth: resp::DEPTH_MAX,
            };
            let token = self.tokens.sentinel;
            match Asking::start(addr, sentinels.master(), registry, token, caps) {
                Ok(asking) => {
                    self.asking = Some(asking);
                    self.phase = Phase::Asking;
                    return Ok(());
                }
                Err(e) => {
                    log::warn!("Sentinel at {addr}: {e}; asking the next Sentinel");
                    why = format!(" (the last: Sentinel at {addr}: {e})");
                }
            }
        }
        Err(format!(
            "no Sentinel of {} named the master{why}",
            self.url.shown
        ))
    }

    /// The Sentinel asked has had its time: the next one is asked.
    pub fn on_sentinel_overdue(&mut self, registry: &mio::Registry, out: &mut Vec<Incoming<T>>) {
        let Some(asking) = self.asking.as_ref().filter(|asking| asking.overdue()) else {
            return;
        };
        let why = format!(
            "the Sentinel at {} did not answer in {} ms",
            asking.sentinel,
            sentinel::SENTINEL_ANSWER.as_millis()
        );
        self.skip_sentinel(registry, why, out);
    }

    /// This Sentinel cannot help: asks the next, or, when none is left, gives up until the
    /// next attempt.
    fn skip_sentinel(&mut self, registry: &mio::Registry, why: String, out: &mut Vec<Incoming<T>>) {
        log::warn!("{why}; asking the next Sentinel");
        if let Err(why) = self.ask_next(registry) {
            self.disconnect(why, out);
        }
    }

    /// An event on the connection to a Sentinel.
    pub(super) fn on_sentinel_event(
        &mut self,
        registry: &mio::Registry,
        out: &mut Vec<Incoming<T>>,
    ) {
        let Some(asking) = self.asking.as_mut() else {
            return;
        };
        match asking.on_event() {
            Found::Nothing => {}
            Found::Skip(why) => self.skip_sentinel(registry, why, out),
            Found::Master(master) => {
                log::info!(
                    "the Sentinel at {} names {master} as the master",
                    asking.sentinel
                );
                self.asking = None;
                if let Some(sentinels) = self.sentinels.as_mut() {
                    sentinels.answered();
                }
                if let Err(why) = self.open(registry, Target::Tcp(master)) {
                    self.disconnect(why, out);
                }
            }
        }
    }
}
