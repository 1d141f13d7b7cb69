//! The journal's copy on stdout, for log collectors. A thread of its own writes it, so a slow reader
//! of stdout never holds up a session: what the thread has not taken when the queue is full is dropped,
//! and the next line it writes is preceded by a `journalGap` event counting the lost lines.

use std::{
    io::Write,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
        mpsc::{self, SyncSender, TrySendError},
    },
    time::SystemTime,
};

/// Batches of lines queued for stdout at most.
const QUEUE: usize = 4096;

enum Item {
    Lines(Vec<u8>),
    Flush(SyncSender<()>),
}

pub(super) struct StdoutSink {
    tx: SyncSender<Item>,
    dropped: Arc<AtomicU64>,
}

impl StdoutSink {
    pub(super) fn start() -> Self {
        let (tx, rx) = mpsc::sync_channel::<Item>(QUEUE);
        let dropped = Arc::new(AtomicU64::new(0));
        let counter = dropped.clone();
        let spawned = std::thread::Builder::new()
            .name("dbward-journal-stdout".into())
            .spawn(move || {
                let stdout = std::io::stdout();
                for item in rx {
                    let mut out = stdout.lock();
                    match item {
                        Item::Lines(lines) => {
                            let lost = counter.swap(0, Ordering::AcqRel);
                            if lost > 0 {
                                let mut gap = Vec::new();
                                super::event::gap(&mut gap, SystemTime::now(), lost);
                                let _ = out.write_all(&gap);
                            }
                            let _ = out.write_all(&lines);
                        }
                        Item::Flush(done) => {
                            let _ = out.flush();
                            let _ = done.send(());
                        }
                    }
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot start the journal's stdout thread; the journal goes to files only");
        }
        Self { tx, dropped }
    }

    pub(super) fn send(&self, lines: &[u8]) {
        match self.tx.try_send(Item::Lines(lines.to_vec())) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                let n = lines.iter().filter(|&&b| b == b'\n').count() as u64;
                self.dropped.fetch_add(n, Ordering::AcqRel);
            }
        }
    }

    /// Waits (up to a second) until everything queued so far is written; gives up at once when the
    /// queue is full (stdout is not being read).
    pub(super) fn flush(&self) {
        let (done, wait) = mpsc::sync_channel(1);
        if self.tx.try_send(Item::Flush(done)).is_ok() {
            let _ = wait.recv_timeout(std::time::Duration::from_secs(1));
        }
    }
}
