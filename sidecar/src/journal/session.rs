//! One session's part of the journal: its id, its statement numbers, and the buffer its events gather
//! in until the session flushes them (before the client sees a ReadyForQuery, or at once for events
//! that must not wait, such as a request for approval).

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Instant,
};

use super::{Journal, JournalError, lock};

/// A session's buffer is written out early when it grows past this (a client pipelining many
/// statements without a Sync).
const EARLY_FLUSH: usize = 256 * 1024;
/// A buffer that grew past this is given back after a flush.
const KEEP_CAPACITY: usize = 64 * 1024;

/// One session's journal.
pub struct SessionLog {
    journal: Arc<Journal>,
    id: Box<str>,
    started: Instant,
    buf: Mutex<Vec<u8>>,
    last_seq: AtomicU64,
}

impl std::fmt::Debug for SessionLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionLog").field("id", &self.id).finish()
    }
}

impl SessionLog {
    pub fn new(journal: Arc<Journal>, id: String) -> Self {
        Self {
            journal,
            id: id.into_boxed_str(),
            started: Instant::now(),
            buf: Mutex::new(Vec::with_capacity(1024)),
            last_seq: AtomicU64::new(0),
        }
    }

    /// The session's id (16 hex digits).
    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn journal(&self) -> &Journal {
        &self.journal
    }

    /// When the session started.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// The next statement's number (1, 2, ...).
    pub fn next_seq(&self) -> u64 {
        self.last_seq.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// Statements numbered so far.
    pub fn statements(&self) -> u64 {
        self.last_seq.load(Ordering::Acquire)
    }

    /// Adds an event to the session's buffer (`write` appends one line). The buffer is written out
    /// early when it grows large; that write's error is returned.
    pub fn record(&self, write: impl FnOnce(&mut Vec<u8>)) -> Result<(), JournalError> {
        let mut buf = lock(&self.buf);
        write(&mut buf);
        if buf.len() >= EARLY_FLUSH {
            return self.write_out(&mut buf);
        }
        Ok(())
    }

    /// Adds an event and writes the buffer out at once.
    pub fn record_now(&self, write: impl FnOnce(&mut Vec<u8>)) -> Result<(), JournalError> {
        let mut buf = lock(&self.buf);
        write(&mut buf);
        self.write_out(&mut buf)
    }

    /// Writes out everything buffered.
    pub fn flush(&self) -> Result<(), JournalError> {
        let mut buf = lock(&self.buf);
        self.write_out(&mut buf)
    }

    fn write_out(&self, buf: &mut Vec<u8>) -> Result<(), JournalError> {
        if buf.is_empty() {
            return Ok(());
        }
        let written = self.journal.append(buf);
        // Lines that could not be written are not retried: the journal is unhealthy and the session
        // is being ended over it; keeping them would only grow the buffer.
        buf.clear();
        if buf.capacity() > KEEP_CAPACITY {
            buf.shrink_to(KEEP_CAPACITY);
        }
        written
    }
}
