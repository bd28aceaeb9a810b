//! Who asked: the connection a request came on, the client it speaks for, and how its
//! answer ends. Carried with a request through the chat, and kept with one that waits
//! for Redis.

use crate::clients::ClientId;
use crate::waitlist::Waiter;

/// Who asked: the connection, its client, and how the answer ends.
#[derive(Clone, Copy, Debug)]
pub struct Asked {
    /// The connection, as the shell names it.
    pub conn: Waiter,
    /// The client it speaks for (its address's entry in the table of clients).
    pub client: ClientId,
    /// Hang up after the answer.
    pub close: bool,
    /// With `--redis`: the request waited while its room's copy read Redis past the
    /// position it names, so a position still ahead is one Redis never issued.
    pub caught_up: bool,
}
