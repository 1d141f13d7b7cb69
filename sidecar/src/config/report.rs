//! Telling the operator which version each connection's database runs: the operator never logs in (the
//! credential is the sidecar's to use), so it learns the `server_version` a server announces at login
//! from the sidecars, and shows it as the DatabaseConnection's `status.serverVersion`.
//!
//! [`ServerVersions::note`] is called at every upstream login and costs a lock and a map lookup: only a
//! version that differs from the last one handed over for that connection goes, over a small bounded
//! queue, to a background task that posts it (`POST /v1/server-version`) and retries while the operator
//! is unreachable. A full queue drops the report: the next login notes it again.

use std::{
    collections::HashMap,
    future::Future,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::Duration,
};

use dbward_crds::wire::ServerVersionReport;
use tokio::sync::mpsc::{self, error::TrySendError};
use tracing::{debug, warn};

use super::operator::{OperatorClient, OperatorError, backoff};

/// How many reports may wait for the background task (a sidecar serves a few connections).
pub const QUEUE: usize = 16;
/// How many times one report is posted while the operator is unreachable (about 35 s with
/// [`backoff`]) before it waits for the next login.
pub const MAX_ATTEMPTS: u32 = 8;

/// The last version handed over, per connection.
type Sent = Arc<Mutex<HashMap<String, String>>>;

/// The sidecar's reports of its databases' versions to the operator ([`spawn`](Self::spawn)).
#[derive(Debug)]
pub struct ServerVersions {
    sent: Sent,
    queue: mpsc::Sender<ServerVersionReport>,
}

impl ServerVersions {
    /// Starts the task that posts reports through `client` (on the current Tokio runtime); it ends when
    /// the returned value is dropped.
    pub fn spawn(client: Arc<OperatorClient>) -> Arc<ServerVersions> {
        let (versions, reports) = Self::with_queue(QUEUE);
        tokio::spawn(post_reports(client, reports, versions.sent.clone()));
        Arc::new(versions)
    }

    fn with_queue(capacity: usize) -> (Self, mpsc::Receiver<ServerVersionReport>) {
        let (queue, reports) = mpsc::channel(capacity);
        let versions = Self {
            sent: Sent::default(),
            queue,
        };
        (versions, reports)
    }

    /// The server of `connection` announced `version` at a login. Returns at once; reports it only when
    /// it differs from the last version handed over for `connection`.
    pub fn note(&self, connection: &str, version: &str) {
        let mut sent = lock(&self.sent);
        if sent.get(connection).is_some_and(|v| v == version) {
            return;
        }
        let report = ServerVersionReport {
            connection: connection.to_owned(),
            server_version: version.to_owned(),
        };
        match self.queue.try_send(report) {
            Ok(()) => {
                sent.insert(connection.to_owned(), version.to_owned());
            }
            Err(TrySendError::Full(_)) => {
                debug!(
                    connection,
                    "server version reports are queued up; this one waits for the next login"
                );
            }
            Err(TrySendError::Closed(_)) => {
                debug!(connection, "the server version reporter has stopped");
            }
        }
    }
}

impl crate::proxy::session::LoginObserver for ServerVersions {
    fn server_version(&self, connection: &str, server_version: &str) {
        self.note(connection, server_version);
    }
}

fn lock(sent: &Sent) -> MutexGuard<'_, HashMap<String, String>> {
    sent.lock().unwrap_or_else(PoisonError::into_inner)
}

/// How posting one report ended.
#[derive(Debug)]
enum Delivery {
    /// The operator took it.
    Sent,
    /// Refused for good (the report or the pod is wrong): asking again with the same report won't help.
    Refused(String),
    /// Still failing after [`MAX_ATTEMPTS`]: the next login may try again.
    GaveUp(OperatorError),
}

async fn post_reports(
    client: Arc<OperatorClient>,
    mut reports: mpsc::Receiver<ServerVersionReport>,
    sent: Sent,
) {
    while let Some(report) = reports.recv().await {
        let (client, r) = (&*client, &report);
        let delivery = deliver(r, MAX_ATTEMPTS, backoff, move || {
            client.report_server_version(&r.connection, &r.server_version)
        })
        .await;
        settle(&sent, &report, delivery);
    }
}

/// Posts `report` with `post`, retrying transient failures up to `attempts` times in all, `delay(n)`
/// after the n-th failure (from 0). A report that is not valid is not posted.
async fn deliver<F, Fut>(
    report: &ServerVersionReport,
    attempts: u32,
    delay: impl Fn(u32) -> Duration,
    post: F,
) -> Delivery
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<(), OperatorError>>,
{
    if let Err(errors) = report.validate() {
        let all: Vec<String> = errors.iter().map(ToString::to_string).collect();
        return Delivery::Refused(all.join("; "));
    }
    let mut failures = 0u32;
    loop {
        match post().await {
            Ok(()) => return Delivery::Sent,
            Err(e) if !e.is_transient() => return Delivery::Refused(e.to_string()),
            Err(e) if failures + 1 >= attempts => return Delivery::GaveUp(e),
            Err(e) => {
                debug!(connection = %report.connection, error = %e, "reporting the server version failed; trying again");
                tokio::time::sleep(delay(failures)).await;
                failures += 1;
            }
        }
    }
}

/// Logs how `report` ended; after [`Delivery::GaveUp`] forgets it (unless a newer version was noted
/// meanwhile), so that the next login reports it again.
fn settle(sent: &Sent, report: &ServerVersionReport, delivery: Delivery) {
    let (connection, version) = (&report.connection, &report.server_version);
    match delivery {
        Delivery::Sent => debug!(connection, version, "server version reported to the operator"),
        Delivery::Refused(error) => warn!(
            connection, version, %error,
            "the operator refused the server version report; it is not sent again until the version changes"
        ),
        Delivery::GaveUp(error) => {
            warn!(
                connection, version, %error,
                "cannot report the server version to the operator; giving up until the next login"
            );
            let mut sent = lock(sent);
            if sent.get(connection) == Some(version) {
                sent.remove(connection);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::atomic::{AtomicU32, Ordering};

    use http::StatusCode;

    use super::*;

    fn queued(reports: &mut mpsc::Receiver<ServerVersionReport>) -> Vec<(String, String)> {
        let mut out = Vec::new();
        while let Ok(r) = reports.try_recv() {
            out.push((r.connection, r.server_version));
        }
        out
    }

    fn pair(connection: &str, version: &str) -> (String, String) {
        (connection.to_owned(), version.to_owned())
    }

    fn report(connection: &str, version: &str) -> ServerVersionReport {
        ServerVersionReport {
            connection: connection.to_owned(),
            server_version: version.to_owned(),
        }
    }

    fn refused(status: StatusCode) -> OperatorError {
        OperatorError::Refused {
            call: "POST /v1/server-version",
            status,
            message: "no".into(),
        }
    }

    #[test]
    fn only_a_new_version_per_connection_is_reported() {
        let (versions, mut reports) = ServerVersions::with_queue(QUEUE);
        for _ in 0..1000 {
            versions.note("orders", "16.4");
        }
        assert_eq!(queued(&mut reports), [pair("orders", "16.4")]);
        versions.note("analytics", "16.4");
        versions.note("orders", "16.4");
        versions.note("orders", "17.0");
        versions.note("orders", "17.0");
        assert_eq!(
            queued(&mut reports),
            [pair("analytics", "16.4"), pair("orders", "17.0")]
        );
        // Back to the older version (a failover to a replica not yet upgraded): a change too.
        versions.note("orders", "16.4");
        assert_eq!(queued(&mut reports), [pair("orders", "16.4")]);
    }

    #[test]
    fn a_report_dropped_on_a_full_queue_goes_at_the_next_login() {
        let (versions, mut reports) = ServerVersions::with_queue(1);
        versions.note("orders", "16.4");
        versions.note("analytics", "15.2");
        assert_eq!(queued(&mut reports), [pair("orders", "16.4")]);
        versions.note("analytics", "15.2");
        assert_eq!(queued(&mut reports), [pair("analytics", "15.2")]);
    }

    #[test]
    fn noting_after_the_task_stopped_does_nothing() {
        let (versions, reports) = ServerVersions::with_queue(QUEUE);
        drop(reports);
        versions.note("orders", "16.4");
        assert!(lock(&versions.sent).is_empty());
    }

    #[test]
    fn giving_up_lets_the_next_login_report_again_but_a_refusal_does_not() {
        let (versions, mut reports) = ServerVersions::with_queue(QUEUE);
        versions.note("orders", "16.4");
        queued(&mut reports);
        settle(
            &versions.sent,
            &report("orders", "16.4"),
            Delivery::Refused("403".into()),
        );
        versions.note("orders", "16.4");
        assert!(queued(&mut reports).is_empty(), "refused: not again");

        settle(
            &versions.sent,
            &report("orders", "16.4"),
            Delivery::GaveUp(refused(StatusCode::SERVICE_UNAVAILABLE)),
        );
        versions.note("orders", "16.4");
        assert_eq!(queued(&mut reports), [pair("orders", "16.4")], "gave up: again");

        // Giving up on an older version keeps a newer one noted meanwhile.
        versions.note("orders", "17.0");
        queued(&mut reports);
        settle(
            &versions.sent,
            &report("orders", "16.4"),
            Delivery::GaveUp(refused(StatusCode::SERVICE_UNAVAILABLE)),
        );
        versions.note("orders", "17.0");
        assert!(queued(&mut reports).is_empty());
    }

    /// `deliver` against a post that answers `answers` in turn, then succeeds; returns how it ended and
    /// how many posts were made.
    async fn run(answers: Vec<StatusCode>, version: &str) -> (Delivery, u32) {
        let posts = AtomicU32::new(0);
        let answers = Mutex::new(answers.into_iter());
        let post = || {
            posts.fetch_add(1, Ordering::Relaxed);
            let next = answers.lock().unwrap().next();
            async move { next.map_or(Ok(()), |status| Err(refused(status))) }
        };
        let delivery = deliver(&report("orders", version), 4, |_| Duration::ZERO, post).await;
        (delivery, posts.load(Ordering::Relaxed))
    }

    #[tokio::test]
    async fn transient_failures_are_retried_a_bounded_number_of_times() {
        let down = StatusCode::SERVICE_UNAVAILABLE;
        let (d, posts) = run(vec![down, StatusCode::UNAUTHORIZED, down], "16.4").await;
        assert!(matches!(d, Delivery::Sent), "{d:?}");
        assert_eq!(posts, 4);

        let (d, posts) = run(vec![down; 10], "16.4").await;
        assert!(matches!(d, Delivery::GaveUp(_)), "{d:?}");
        assert_eq!(posts, 4);

        let (d, posts) = run(vec![down, StatusCode::FORBIDDEN], "16.4").await;
        assert!(
            matches!(d, Delivery::Refused(ref e) if e.contains("403")),
            "{d:?}"
        );
        assert_eq!(posts, 2);

        let (d, posts) = run(vec![], "16.4\n").await;
        assert!(
            matches!(d, Delivery::Refused(ref e) if e.contains("control character")),
            "{d:?}"
        );
        assert_eq!(posts, 0, "an invalid version is not posted");
    }
}
