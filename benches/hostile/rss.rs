//! The server's resident memory, sampled on a thread of its own from `/proc/<pid>/status`
//! (`VmRSS`): the kernel answers even while the server's loop is frozen, which `/stats`
//! (answered by that loop) cannot.

use crate::procfs::rss_bytes;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// How often RSS is read: fine enough to catch a peak that lasts the write timeout (2 s).
const EVERY: Duration = Duration::from_millis(50);

/// RSS samples of one process.
pub struct RssSampler {
    /// Set to stop the thread.
    stop: Arc<AtomicBool>,
    /// `(when, bytes)`, in time order.
    samples: Arc<Mutex<Vec<(Instant, u64)>>>,
    thread: Option<JoinHandle<()>>,
}

/// RSS over one window.
#[derive(Clone, Copy, Debug, Default)]
pub struct RssSeen {
    /// The last sample before the window ends.
    pub last: u64,
    /// The largest sample in the window (or `last`, if larger).
    pub peak: u64,
}

impl RssSampler {
    /// Starts sampling process `pid`.
    pub fn start(pid: u32) -> io::Result<RssSampler> {
        rss_bytes(pid)?;
        let stop = Arc::new(AtomicBool::new(false));
        let samples = Arc::new(Mutex::new(Vec::new()));
        let (stop2, samples2) = (Arc::clone(&stop), Arc::clone(&samples));
        let thread = thread::Builder::new().name("rss".into()).spawn(move || {
            while !stop2.load(Relaxed) {
                // Gone (the server exited): nothing more to sample.
                let Ok(bytes) = rss_bytes(pid) else { break };
                if let Ok(mut s) = samples2.lock() {
                    s.push((Instant::now(), bytes));
                }
                thread::sleep(EVERY);
            }
        })?;
        Ok(RssSampler {
            stop,
            samples,
            thread: Some(thread),
        })
    }

    /// RSS over `from..to`.
    pub fn seen(&self, from: Instant, to: Instant) -> RssSeen {
        let samples = self.samples.lock().expect("the RSS thread panicked");
        let last = samples
            .iter()
            .take_while(|(t, _)| *t < to)
            .last()
            .map_or(0, |&(_, b)| b);
        // A window shorter than the sampling interval may hold no sample of its own; the
        // last one before it ends stands for it.
        let peak = samples
            .iter()
            .filter(|(t, _)| (from..to).contains(t))
            .map(|&(_, b)| b)
            .max()
            .unwrap_or(0)
            .max(last);
        RssSeen { last, peak }
    }
}

impl Drop for RssSampler {
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
