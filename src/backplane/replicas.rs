//! With `--redis-replicas N`: a reply that must not be believed before N replicas hold
//! what it says (a post's id, what a read brought) is held ([`Note::Hold`]) until a `WAIT
//! N` sent after it answers; a post's announcement is published only then. At most one
//! `WAIT` is in flight, covering every command sent before it.

use super::{Backplane, Incoming, Note, Sent, REPLICAS_WAIT_MS};
use redis_protocol::resp2::types::OwnedFrame;
use std::time::Instant;

impl<T> Backplane<T> {
    /// Sends a command; one whose reply is held ([`Note::Hold`]) is followed by a `WAIT`.
    pub(super) fn command_held(&mut self, args: &[&[u8]], note: Note<T>) -> Result<(), T> {
        let held = matches!(note, Note::Hold(..));
        Self::give_back(self.command(args, note))?;
        if held {
            self.cover_with_wait();
        }
        Ok(())
    }

    /// The reply to `WAIT`: every reply held is handed on if `replicas` replicas
    /// acknowledged it, and a post's announcement published; otherwise each fails (a post
    /// is refused, a read is not applied). Another `WAIT` goes if commands went after this
    /// one.
    pub(super) fn on_replicas(&mut self, frame: &OwnedFrame, out: &mut Vec<Incoming<T>>) {
        self.waiting_replicas = false;
        let acknowledged = match frame {
            OwnedFrame::Integer(n) => Ok(*n),
            OwnedFrame::Error(e) => Err(e.clone()),
            _ => Err("WAIT answered something other than a count".to_owned()),
        };
        let wanted = self.replicas;
        for held in std::mem::take(&mut self.held) {
            let answer = match (&acknowledged, held.answer) {
                (_, Err(e)) => Err(e),
                (Ok(n), Ok(answer)) if *n >= i64::from(wanted) => Ok(answer),
                (Ok(n), Ok(_)) => Err(format!(
                    "{n} of the {wanted} replicas asked for acknowledged it within \
                     {REPLICAS_WAIT_MS} ms"
                )),
                (Err(e), Ok(_)) => Err(e.clone()),
            };
            match (&answer, held.announce) {
                (Err(why), _) => log::debug!("a reply is not taken: {why}"),
                (Ok(_), Some((channel, said))) => self.announce(&channel, &said),
                (Ok(_), None) => {}
            }
            out.push(Incoming::Reply(held.then, answer));
        }
        if std::mem::take(&mut self.wait_owed) {
            self.send_wait();
        }
    }

    /// A post's script went: a `WAIT` must follow it. At most one is in flight; one sent
    /// after this post covers it and every post before it (Redis counts a replica's
    /// acknowledgement by replication offset), so under load one `WAIT` serves many posts.
    pub(super) fn cover_with_wait(&mut self) {
        if self.waiting_replicas {
            self.wait_owed = true;
        } else {
            self.send_wait();
        }
    }

    /// Publishes what a post's script left to announce (the node's own copy hears it too,
    /// like every other node's).
    fn announce(&mut self, channel: &str, said: &[u8]) {
        let Some(link) = self.commands.as_mut() else {
            return;
        };
        if link.send(&[b"PUBLISH", channel.as_bytes(), said]).is_ok() {
            let sent = Sent {
                name: "PUBLISH",
                again: None,
            };
            self.notes.push_back((Instant::now(), Note::Ignore, sent));
        }
    }

    fn send_wait(&mut self) {
        let Some(link) = self.commands.as_mut() else {
            return;
        };
        let (replicas, timeout) = (self.replicas.to_string(), REPLICAS_WAIT_MS.to_string());
        if link
            .send(&[b"WAIT", replicas.as_bytes(), timeout.as_bytes()])
            .is_err()
        {
            return; // the event for this connection reports the failure and drops it
        }
        let sent = Sent {
            name: "WAIT",
            again: None,
        };
        self.notes.push_back((Instant::now(), Note::Replicas, sent));
        self.waiting_replicas = true;
    }
}
