//! With `--workers`: the worker's end of its channel to the supervisor, answered from the
//! loop. Each second the supervisor writes a byte to every worker it does not see asleep
//! in `/proc` and wants one back; a worker whose loop has stopped coming round (stopped by
//! SIGSTOP, or stuck in a pass) answers nothing, and is killed and started again (see
//! `supervisor.rs`). The answer comes from the loop, not
//! from a thread of its own, because that is what it has to prove: that the loop runs.

use super::Server;
use mio::{Interest, Token};
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;

/// The channel's token.
pub(super) const SUPERVISOR: Token = Token(usize::MAX - 6);

/// Bytes taken from the channel per read. The supervisor sends one a second and is our
/// own parent, so reading it to `WouldBlock` is a few bytes of work a pass at most.
const PINGS_READ_BYTES: usize = 64;

impl Server {
    /// Answers the supervisor's pings on `channel` from now on: a worker calls this once,
    /// before [`Server::run`], with the socket on which it said that it listens.
    pub fn answer_supervisor(&mut self, channel: UnixStream) -> io::Result<()> {
        channel.set_nonblocking(true)?;
        let mut channel = mio::net::UnixStream::from_std(channel);
        // Pings already waiting are reported at once: registering reports the socket's
        // current readiness, edge-triggered or not.
        self.poll
            .registry()
            .register(&mut channel, SUPERVISOR, Interest::READABLE)?;
        self.control.supervisor = Some(channel);
        Ok(())
    }

    /// Step 2 for the channel: reads every ping waiting and answers them with one byte. At
    /// the end of the stream (the supervisor is gone) or on an error, the channel is
    /// dropped and the worker carries on; a worker whose supervisor dies gets SIGTERM
    /// anyway.
    pub(super) fn on_supervisor(&mut self) {
        let Some(channel) = self.control.supervisor.as_mut() else {
            return;
        };
        let mut pings = [0u8; PINGS_READ_BYTES];
        let mut heard = false;
        loop {
            match channel.read(&mut pings) {
                Ok(0) => {
                    self.control.supervisor = None;
                    return;
                }
                Ok(_) => heard = true,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    log::warn!("the supervisor's channel: {e}; no longer answering pings");
                    self.control.supervisor = None;
                    return;
                }
            }
        }
        // One byte in a socket the supervisor drains every pass: a full buffer (nothing
        // written) cannot happen while it reads, and if it does not read, it pings again.
        if heard {
            let _ = channel.write(b".");
        }
    }
}
