//! What the soak's threads share while they run (stop flags, the newest posted id, the
//! readers' progress and sockets), and the bounded error lists every thread reports.

use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Mutex;

/// Errors kept per thread for the report; the rest are only counted.
const ERRORS_KEPT: usize = 5;

/// What every thread of the soak shares. Threads report their results through `join`;
/// only what must be seen while they run lives here.
pub struct Shared {
    pub addr: SocketAddr,
    /// Posters and churn stop when this is set.
    pub stop_load: AtomicBool,
    /// Well-behaved clients stop when this is set (after they caught up).
    pub stop_readers: AtomicBool,
    /// The newest id posted, `(seq, id)`: churn polls ask from it so they park instead of
    /// fetching the whole history.
    pub head: Mutex<Option<(u64, String)>>,
    /// Posts answered 201 so far, for progress lines.
    pub posted: AtomicU64,
    /// Churn clients connected so far, and open right now (held under [`CHURN_OPEN_MAX`]).
    pub churn_opened: AtomicU64,
    pub churn_open: AtomicUsize,
    /// Per well-behaved client: the highest seq it has seen, for the catch-up wait.
    pub progress: Vec<AtomicU64>,
    /// Per well-behaved client: a handle on its current socket, so stopping can shut it
    /// down instead of waiting for a poll or a heartbeat to end a blocking read.
    pub sockets: Vec<Mutex<Option<TcpStream>>>,
}

impl Shared {
    pub fn head_id(&self) -> Option<String> {
        self.head.lock().ok()?.as_ref().map(|(_, id)| id.clone())
    }

    pub fn note_posted(&self, seq: u64, id: &str) {
        self.posted.fetch_add(1, Relaxed);
        if let Ok(mut head) = self.head.lock() {
            if head.as_ref().is_none_or(|(newest, _)| seq > *newest) {
                *head = Some((seq, id.to_owned()));
            }
        }
    }

    /// Remembers a well-behaved client's socket; shuts it at once if stopping already began.
    pub fn register(&self, slot: usize, stream: &TcpStream) {
        if let (Ok(mut held), Ok(clone)) = (self.sockets[slot].lock(), stream.try_clone()) {
            *held = Some(clone);
        }
        if self.stop_readers.load(Relaxed) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }

    pub fn stop_readers(&self) {
        self.stop_readers.store(true, Relaxed);
        for slot in &self.sockets {
            if let Ok(held) = slot.lock() {
                if let Some(stream) = held.as_ref() {
                    let _ = stream.shutdown(Shutdown::Both);
                }
            }
        }
    }
}

/// Errors one thread met: the first few in full, all of them counted.
#[derive(Default)]
pub struct Errors {
    pub kept: Vec<String>,
    pub count: u64,
}

impl Errors {
    pub fn push(&mut self, error: String) {
        self.count += 1;
        if self.kept.len() < ERRORS_KEPT {
            self.kept.push(error);
        }
    }
}
