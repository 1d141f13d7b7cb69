//! The sidecar's admin port (`run --admin ADDR`): `/healthz` (the process answers), `/readyz` (it serves
//! its connections: it has a configuration and its listeners are bound) and `/metrics` (Prometheus text
//! format). Nothing here carries a secret, a statement or a value: counters by connection, decision and
//! outcome only.
//!
//! The counters are process-wide ([`metrics`]), so the proxy, the guard and the config followers count
//! without being handed anything. Statement counters are resolved once, so counting one is an atomic
//! add.

use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::{
        Arc, OnceLock,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use http::{Method, Response, StatusCode, header};
use http_body_util::Full;
use hyper::{body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus::{Encoder, IntCounter, IntCounterVec, IntGauge, Opts, Registry, TextEncoder};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::journal::Journal;

/// The sidecar's counters.
pub struct Metrics {
    registry: Registry,
    /// Sessions by connection and outcome (`started`, `refused`).
    pub sessions: IntCounterVec,
    /// Sessions open now.
    pub sessions_open: IntGauge,
    /// Statements judged, by decision.
    pub allowed: IntCounter,
    pub denied: IntCounter,
    pub held: IntCounter,
    /// Approval requests' outcomes as the sessions saw them (`approved`, `denied`, `expired`,
    /// `cancelled`, `asked`, `failed`).
    pub approvals: IntCounterVec,
    /// Logins to the database that failed, by connection.
    pub upstream_failures: IntCounterVec,
    /// Configurations applied after start, by result (`applied`, `rejected`).
    pub reloads: IntCounterVec,
    journal_healthy: IntGauge,
    ready: AtomicBool,
}

/// The process's counters.
pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

fn counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("a valid metric definition");
    registry
        .register(Box::new(c.clone()))
        .expect("each metric registered once");
    c
}

fn gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).expect("a valid metric definition");
    registry
        .register(Box::new(g.clone()))
        .expect("each metric registered once");
    g
}

impl Metrics {
    fn new() -> Self {
        let registry = Registry::new();
        let statements = counter_vec(
            &registry,
            "dbward_sidecar_statements_total",
            "Statements judged, by decision (allow, deny, requireApproval).",
            &["decision"],
        );
        Self {
            sessions: counter_vec(
                &registry,
                "dbward_sidecar_sessions_total",
                "Client sessions by connection and outcome (started, refused).",
                &["connection", "outcome"],
            ),
            sessions_open: gauge(
                &registry,
                "dbward_sidecar_sessions_open",
                "Client sessions open now.",
            ),
            allowed: statements.with_label_values(&["allow"]),
            denied: statements.with_label_values(&["deny"]),
            held: statements.with_label_values(&["requireApproval"]),
            approvals: counter_vec(
                &registry,
                "dbward_sidecar_approvals_total",
                "Statements that needed approval, by how it ended for the session (approved, denied, \
                 expired, cancelled, asked, failed).",
                &["outcome"],
            ),
            upstream_failures: counter_vec(
                &registry,
                "dbward_sidecar_upstream_failures_total",
                "Logins to the database that failed, by connection.",
                &["connection"],
            ),
            reloads: counter_vec(
                &registry,
                "dbward_sidecar_config_reloads_total",
                "Configurations received after start, by result (applied, rejected).",
                &["result"],
            ),
            journal_healthy: gauge(
                &registry,
                "dbward_sidecar_journal_healthy",
                "1 while the session journal can be written (or none is kept), 0 while it cannot and \
                 statements are refused.",
            ),
            ready: AtomicBool::new(false),
            registry,
        }
    }

    /// Marks the sidecar ready: it has a configuration and its listeners are bound.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// The text exposition of every counter, the journal's health read now.
    pub fn render(&self, journal: Option<&Journal>) -> Vec<u8> {
        self.journal_healthy
            .set(i64::from(journal.is_none_or(Journal::healthy)));
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            warn!(error = %e, "cannot encode the metrics");
        }
        out
    }
}

/// Counts a session open while it lives.
pub struct OpenSession(());

impl OpenSession {
    pub fn new() -> Self {
        metrics().sessions_open.inc();
        Self(())
    }
}

impl Default for OpenSession {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for OpenSession {
    fn drop(&mut self) {
        metrics().sessions_open.dec();
    }
}

/// Counts a session of `connection` with `outcome` (`started`, `refused`).
pub fn count_session(connection: &str, outcome: &str) {
    metrics().sessions.with_label_values(&[connection, outcome]).inc();
}

/// Time a client has to send a request's headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Binds the admin port. Done before anything else, so that `/healthz` answers while the sidecar waits
/// for its first configuration.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let listener = TcpListener::bind(addr).await?;
    info!(addr = %listener.local_addr().unwrap_or(addr), "admin port: /healthz /readyz /metrics");
    Ok(listener)
}

/// Serves the admin port until `shutdown`.
pub async fn serve(listener: TcpListener, journal: Arc<OnceLock<Arc<Journal>>>, shutdown: CancellationToken) {
    loop {
        let (tcp, peer) = tokio::select! {
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    warn!(error = %e, "admin port: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => return,
        };
        let journal = journal.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: hyper::Request<Incoming>| {
                let journal = journal.clone();
                async move { Ok::<_, Infallible>(answer(req.method(), req.uri().path(), journal.get())) }
            });
            let served = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .keep_alive(false)
                .serve_connection(TokioIo::new(tcp), service)
                .await;
            if let Err(e) = served {
                debug!(%peer, error = %e, "admin port: connection ended with an error");
            }
        });
    }
}

/// The answer to one request.
fn answer(method: &Method, path: &str, journal: Option<&Arc<Journal>>) -> Response<Full<Bytes>> {
    let text = |status: StatusCode, body: &'static str| {
        let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
        *r.status_mut() = status;
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            "text/plain; charset=utf-8".parse().expect("a valid header"),
        );
        r
    };
    if method != Method::GET && method != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET\n");
    }
    match path {
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/readyz" if metrics().is_ready() => text(StatusCode::OK, "ready\n"),
        "/readyz" => text(
            StatusCode::SERVICE_UNAVAILABLE,
            "not serving yet: waiting for a configuration\n",
        ),
        "/metrics" => {
            let mut r = Response::new(Full::new(Bytes::from(metrics().render(journal.map(|j| &**j)))));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8"
                    .parse()
                    .expect("a valid header"),
            );
            r
        }
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: /healthz, /readyz or /metrics\n",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_methods() {
        assert_eq!(answer(&Method::GET, "/healthz", None).status(), StatusCode::OK);
        assert_eq!(
            answer(&Method::GET, "/nope", None).status(),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            answer(&Method::POST, "/healthz", None).status(),
            StatusCode::METHOD_NOT_ALLOWED
        );
        let m = answer(&Method::GET, "/metrics", None);
        assert_eq!(m.status(), StatusCode::OK);
    }

    #[test]
    fn counters_show_in_the_exposition() {
        metrics().denied.inc();
        metrics().sessions.with_label_values(&["orders", "started"]).inc();
        let text = String::from_utf8(metrics().render(None)).unwrap();
        assert!(
            text.contains("dbward_sidecar_statements_total{decision=\"deny\"}"),
            "{text}"
        );
        assert!(
            text.contains("dbward_sidecar_sessions_total{connection=\"orders\",outcome=\"started\"}"),
            "{text}"
        );
        assert!(text.contains("dbward_sidecar_journal_healthy 1"), "{text}");
    }
}
