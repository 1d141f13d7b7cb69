//! What passes between a session's hooks and its relay outside the message stream: notices a hook
//! sends the client on its own (while it holds a statement for approval), and the client's cancel
//! requests (which arrive on a connection of their own).

use std::sync::{
    Arc, Mutex,
    atomic::{AtomicBool, AtomicU64, Ordering},
};

use bytes::BytesMut;
use tokio::sync::Notify;

use super::messages::error::{Report, Severity};

/// Notices queued for the client beyond this many bytes are dropped (a hook that sends too many
/// cannot grow the session's memory).
const MAX_QUEUED: usize = 64 * 1024;

/// A session's signals; cloned handles share them.
#[derive(Clone, Default)]
pub struct SessionSignals {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    notices: Mutex<BytesMut>,
    queued: AtomicBool,
    /// Wakes the server-to-client pump so it writes queued notices at the next message boundary.
    wake: Arc<Notify>,
    /// Counts the client's cancel requests for this session.
    cancels: AtomicU64,
    cancelled: Notify,
}

impl std::fmt::Debug for SessionSignals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionSignals")
            .field("cancels", &self.cancel_count())
            .finish_non_exhaustive()
    }
}

impl SessionSignals {
    /// Queues a NoticeResponse for the client; the relay writes it between two server messages.
    pub fn notice(&self, code: &str, message: &str, hint: Option<&str>) {
        let mut fields = Report::new(Severity::Notice, code, message);
        if let Some(h) = hint {
            fields = fields.with_hint(h);
        }
        {
            let mut q = self.inner.notices.lock().unwrap_or_else(|e| e.into_inner());
            if q.len() >= MAX_QUEUED {
                return;
            }
            fields.encode(&mut q);
        }
        self.inner.queued.store(true, Ordering::Release);
        self.inner.wake.notify_one();
    }

    /// Moves the queued notices into `out`.
    pub(crate) fn take_notices(&self, out: &mut BytesMut) {
        if !self.inner.queued.swap(false, Ordering::AcqRel) {
            return;
        }
        let mut q = self.inner.notices.lock().unwrap_or_else(|e| e.into_inner());
        out.extend_from_slice(&q);
        q.clear();
    }

    /// What the server-to-client pump waits on besides the server.
    pub(crate) fn wake(&self) -> Arc<Notify> {
        self.inner.wake.clone()
    }

    /// Records a cancel request from the client and wakes whoever waits for one.
    pub fn cancel(&self) {
        self.inner.cancels.fetch_add(1, Ordering::AcqRel);
        self.inner.cancelled.notify_waiters();
    }

    /// How many cancel requests the session has had; pass it to [`SessionSignals::cancelled_after`].
    pub fn cancel_count(&self) -> u64 {
        self.inner.cancels.load(Ordering::Acquire)
    }

    /// Resolves once a cancel request arrives after `count` had been seen.
    pub async fn cancelled_after(&self, count: u64) {
        loop {
            let notified = self.inner.cancelled.notified();
            if self.cancel_count() > count {
                return;
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn notices_are_queued_and_bounded() {
        let s = SessionSignals::default();
        let mut out = BytesMut::new();
        s.take_notices(&mut out);
        assert!(out.is_empty());
        s.notice("01000", "held for approval", Some("approve it"));
        s.take_notices(&mut out);
        assert_eq!(out[0], b'N');
        assert!(out.windows(17).any(|w| w == b"held for approval"));
        out.clear();
        for _ in 0..10_000 {
            s.notice("01000", "x", None);
        }
        s.take_notices(&mut out);
        assert!(out.len() < MAX_QUEUED + 64, "{}", out.len());
    }

    #[tokio::test]
    async fn only_cancels_after_the_count_wake() {
        let s = SessionSignals::default();
        s.cancel();
        let seen = s.cancel_count();
        let early = tokio::time::timeout(Duration::from_millis(50), s.cancelled_after(seen)).await;
        assert!(early.is_err(), "an older cancel must not end a later wait");
        let s2 = s.clone();
        let waiter = tokio::spawn(async move { s2.cancelled_after(seen).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        s.cancel();
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .unwrap()
            .unwrap();
    }
}
