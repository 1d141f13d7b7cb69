//! Bounded waits. Every wait in these tests ends: with the awaited state, or with a panic naming what was
//! awaited, for how long, and the last state seen.

use std::{
    future::Future,
    time::{Duration, Instant},
};

/// How often [`until`] asks by default.
pub const POLL: Duration = Duration::from_millis(250);

/// A deadline for a hand-written polling loop.
#[derive(Debug)]
pub struct Deadline {
    what: String,
    timeout: Duration,
    end: Instant,
}

impl Deadline {
    /// A deadline `timeout` from now for `what` (said in the panic message: "waiting for {what}").
    pub fn new(what: impl Into<String>, timeout: Duration) -> Self {
        Self {
            what: what.into(),
            timeout,
            end: Instant::now() + timeout,
        }
    }

    /// Panics when the deadline has passed, with `last`, the last state seen.
    pub fn check(&self, last: &str) {
        if Instant::now() >= self.end {
            panic!(
                "timed out after {:?} waiting for {}; last seen: {last}",
                self.timeout, self.what
            );
        }
    }

    /// The time left (zero once passed).
    pub fn left(&self) -> Duration {
        self.end.saturating_duration_since(Instant::now())
    }

    /// Sleeps `every`, or less when the deadline comes first.
    pub async fn sleep(&self, every: Duration) {
        tokio::time::sleep(every.min(self.left())).await;
    }
}

/// Polls `probe` every `every` until it answers `Ok`, and returns that. `Err(state)` means "not yet", with
/// the state seen; after `timeout` this panics with the last one. A probe that does not answer is itself
/// cut off at the deadline.
pub async fn until<T, F, Fut>(what: &str, timeout: Duration, every: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Deadline::new(what, timeout);
    loop {
        // Give a slow probe at least a moment even at the very end.
        let limit = deadline.left().max(Duration::from_millis(500));
        let last = match tokio::time::timeout(limit, probe()).await {
            Ok(Ok(value)) => return value,
            Ok(Err(state)) => state,
            Err(_) => format!("(the last probe did not answer within {limit:?})"),
        };
        deadline.check(&last);
        deadline.sleep(every).await;
    }
}

/// Awaits `future` for at most `timeout`; panics naming `what` after that.
pub async fn bounded<T>(what: &str, timeout: Duration, future: impl Future<Output = T>) -> T {
    match tokio::time::timeout(timeout, future).await {
        Ok(value) => value,
        Err(_) => panic!("timed out after {timeout:?} waiting for {what}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn until_returns_the_first_ok() {
        let mut n = 0;
        let got = until(
            "n to reach 3",
            Duration::from_secs(5),
            Duration::from_millis(1),
            || {
                n += 1;
                let now = n;
                async move {
                    if now >= 3 {
                        Ok(now)
                    } else {
                        Err(format!("n = {now}"))
                    }
                }
            },
        )
        .await;
        assert_eq!(got, 3);
    }

    #[tokio::test]
    #[should_panic(expected = "waiting for the impossible; last seen: still 1")]
    async fn until_panics_with_the_last_state() {
        until(
            "the impossible",
            Duration::from_millis(50),
            Duration::from_millis(5),
            || async { Err::<(), _>("still 1".to_owned()) },
        )
        .await;
    }

    #[tokio::test]
    #[should_panic(expected = "waiting for a hung probe")]
    async fn a_hung_probe_is_cut_off() {
        until(
            "a hung probe",
            Duration::from_millis(50),
            Duration::from_millis(5),
            std::future::pending::<Result<(), String>>,
        )
        .await;
    }
}
