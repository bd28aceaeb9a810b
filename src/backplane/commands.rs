//! The commands the chat's requests become, one method each: a post (stored and announced
//! by the post script), a room's history, presence and its sweep, a typing event. Each
//! says what its reply is for ([`Note`]); the engine in `backplane.rs` sends it, reads the
//! reply and hands it back.

use super::{keys, scripts, Backplane, Expect, Note, Trim};

impl<T> Backplane<T> {
    /// Stores and announces a message (see [`scripts::POST`]). With `--redis-replicas N`
    /// the answer is held until a `WAIT N` sent after it returns (one `WAIT` covers every
    /// post sent before it):
    /// a post is confirmed only once N replicas hold it, and otherwise refused, to be
    /// retried with its `client_id` (a retry of a post that was stored after all is
    /// answered as a duplicate, and waits for the replicas in the same way). Its
    /// announcement waits too: the script returns it, and it is published once the `WAIT`
    /// confirms ([`Backplane::history`] reads wait likewise), so no node shows a message
    /// a failover could take back.
    #[allow(clippy::too_many_arguments)]
    pub fn post(
        &mut self,
        room: &str,
        from: &str,
        text: &str,
        time_ms: u64,
        client_id: Option<&str>,
        trim: Trim,
        new_epoch: u32,
        then: T,
    ) -> Result<(), T> {
        let sha = self.script(scripts::POST);
        let (seq, log, bytes) = (
            keys::room(room, "seq"),
            keys::room(room, "log"),
            keys::room(room, "bytes"),
        );
        let cid = client_id.map_or_else(
            || keys::room(room, "nocid"),
            |id| keys::client_id(room, &crate::room::idempotency_key(from, id)),
        );
        let channel = keys::channel(self.url.db, room);
        let (time, max_messages, max_bytes) = (
            time_ms.to_string(),
            trim.messages.to_string(),
            trim.bytes.to_string(),
        );
        let (ttl, epoch) = (
            keys::CLIENT_ID_TTL_SECS.to_string(),
            format!("{new_epoch:08x}"),
        );
        let overhead = crate::room::MESSAGE_OVERHEAD_BYTES.to_string();
        let held = self.replicas > 0;
        let args: [&[u8]; 19] = [
            b"EVALSHA",
            &sha,
            b"5",
            keys::EPOCH.as_bytes(),
            seq.as_bytes(),
            log.as_bytes(),
            bytes.as_bytes(),
            cid.as_bytes(),
            from.as_bytes(),
            text.as_bytes(),
            time.as_bytes(),
            client_id.unwrap_or("").as_bytes(),
            max_messages.as_bytes(),
            max_bytes.as_bytes(),
            ttl.as_bytes(),
            epoch.as_bytes(),
            channel.as_bytes(),
            overhead.as_bytes(),
            if held { b"0" } else { b"1" }, // announce now, or once replicas hold it
        ];
        let note = match held {
            true => Note::Hold(then, Expect::Posted, Some(channel.clone())),
            false => Note::For(then, Expect::Posted),
        };
        self.command_held(&args, note)
    }

    /// Reads a room's stored messages from `first_seq` on, and with `with_names` the
    /// names present, sweeping at most `sweep_limit` expired ones (see
    /// [`scripts::HISTORY`]). With `--redis-replicas`, the reply is handed on only after
    /// a `WAIT` covering it (the script writes, so the `WAIT` counts every post it read,
    /// whoever stored them).
    #[allow(clippy::too_many_arguments)]
    pub fn history(
        &mut self,
        room: &str,
        first_seq: u64,
        with_names: bool,
        sweep_limit: usize,
        new_epoch: u32,
        then: T,
    ) -> Result<(), T> {
        let sha = self.script(scripts::HISTORY);
        let (seq, log, names) = (
            keys::room(room, "seq"),
            keys::room(room, "log"),
            keys::room(room, "names"),
        );
        let (epoch, first) = (format!("{new_epoch:08x}"), first_seq.to_string());
        let (channel, limit) = (keys::channel(self.url.db, room), sweep_limit.to_string());
        let held = self.replicas > 0;
        let args: [&[u8]; 13] = [
            b"EVALSHA",
            &sha,
            b"4",
            keys::EPOCH.as_bytes(),
            seq.as_bytes(),
            log.as_bytes(),
            names.as_bytes(),
            epoch.as_bytes(),
            first.as_bytes(),
            if with_names { b"1" } else { b"0" },
            channel.as_bytes(),
            limit.as_bytes(),
            if held { b"1" } else { b"0" }, // a write, for the WAIT after it to count
        ];
        let note = match held {
            true => Note::Hold(then, Expect::Snapshot, None),
            false => Note::For(then, Expect::Snapshot),
        };
        self.command_held(&args, note)
    }

    /// Renews (or announces) names present on this node (see [`scripts::PRESENCE`]).
    pub fn presence(&mut self, room: &str, names: &[(&str, u64)], then: T) -> Result<(), T> {
        let sha = self.script(scripts::PRESENCE);
        let (key, channel) = (keys::room(room, "names"), keys::channel(self.url.db, room));
        let ms: Vec<String> = names.iter().map(|(_, ms)| ms.to_string()).collect();
        let mut args: Vec<&[u8]> = vec![b"EVALSHA", &sha, b"1", key.as_bytes(), channel.as_bytes()];
        for ((name, _), ms) in names.iter().zip(&ms) {
            args.push(name.as_bytes());
            args.push(ms.as_bytes());
        }
        Self::give_back(self.command(&args, Note::For(then, Expect::Done)))
    }

    /// Announces the names whose time is up, at most `limit` (see [`scripts::SWEEP`]).
    pub fn sweep(&mut self, room: &str, limit: usize, then: T) -> Result<(), T> {
        let sha = self.script(scripts::SWEEP);
        let (key, channel) = (keys::room(room, "names"), keys::channel(self.url.db, room));
        let limit = limit.to_string();
        let args: [&[u8]; 6] = [
            b"EVALSHA",
            &sha,
            b"1",
            key.as_bytes(),
            channel.as_bytes(),
            limit.as_bytes(),
        ];
        Self::give_back(self.command(&args, Note::For(then, Expect::Done)))
    }

    /// Announces that `name` is typing in `room`. Ephemeral: published, never stored.
    pub fn typing(&mut self, room: &str, name: &str) -> bool {
        let channel = keys::channel(self.url.db, room);
        let payload = format!("t {name}");
        self.command(
            &[b"PUBLISH", channel.as_bytes(), payload.as_bytes()],
            Note::Ignore,
        )
        .is_ok()
    }
}
