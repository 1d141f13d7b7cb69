//! Local listeners: one port per DatabaseConnection, on 127.0.0.1 and ::1, and an orderly shutdown.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::Arc,
    time::Duration,
};

use tokio::{
    io::AsyncWriteExt,
    net::{TcpListener, TcpStream},
    sync::Semaphore,
};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::{info, warn};

use super::{
    messages::error::Report,
    session::{ConnectionContext, SessionShared, serve},
    slots::ConnectionSlots,
};

/// What the proxy serves.
pub struct ProxyConfig {
    /// Each connection with the local port to serve it on (0 = any free port, for tests).
    pub connections: Vec<(Arc<ConnectionContext>, u16)>,
    /// Addresses to listen on; by default 127.0.0.1 and ::1.
    pub listen: Vec<IpAddr>,
    pub shared: SessionShared,
    /// How long running sessions may go on after shutdown begins.
    pub shutdown_grace: Duration,
    /// Sessions served at once, over all connections; more are refused with 53300.
    pub max_sessions: usize,
}

/// The default listen addresses: loopback only.
pub fn loopback() -> Vec<IpAddr> {
    vec![IpAddr::V4(Ipv4Addr::LOCALHOST), IpAddr::V6(Ipv6Addr::LOCALHOST)]
}

/// Binding a listener failed.
#[derive(Debug, thiserror::Error)]
#[error("connection \"{connection}\": cannot listen on {addr}: {source}")]
pub struct ListenError {
    pub connection: String,
    pub addr: SocketAddr,
    #[source]
    pub source: std::io::Error,
}

/// Bound listeners, ready to serve.
pub struct Proxy {
    /// Each listener with the name of the connection it serves.
    listeners: Vec<(String, TcpListener)>,
    slots: ConnectionSlots,
    shared: Arc<SessionShared>,
    grace: Duration,
    limit: Arc<Semaphore>,
}

impl Proxy {
    /// Binds every listener. IPv6 loopback is skipped with a warning when the host has no IPv6.
    pub async fn bind(config: ProxyConfig) -> Result<Self, ListenError> {
        let mut listeners = Vec::new();
        let slots = ConnectionSlots::new(&config.connections);
        for (conn, port) in config.connections {
            let mut port = port;
            for ip in &config.listen {
                let addr = SocketAddr::new(*ip, port);
                match TcpListener::bind(addr).await {
                    Ok(l) => {
                        // With port 0, every address of this connection shares the first port chosen.
                        if port == 0 {
                            port = l.local_addr().map(|a| a.port()).unwrap_or(0);
                        }
                        listeners.push((conn.name.clone(), l));
                    }
                    Err(e) if ip.is_ipv6() && config.listen.len() > 1 && ipv6_unavailable(&e) => {
                        warn!(connection = %conn.name, %addr, error = %e, "IPv6 loopback unavailable; listening on IPv4 only");
                    }
                    Err(source) => {
                        return Err(ListenError {
                            connection: conn.name.clone(),
                            addr,
                            source,
                        });
                    }
                }
            }
        }
        Ok(Self {
            listeners,
            slots,
            shared: Arc::new(config.shared),
            grace: config.shutdown_grace,
            limit: Arc::new(Semaphore::new(config.max_sessions)),
        })
    }

    /// The session journal the sessions write, if any.
    pub fn journal(&self) -> Option<Arc<crate::journal::Journal>> {
        self.shared.journal.clone()
    }

    /// The served connections' settings, to replace while the proxy runs (a reloaded configuration).
    pub fn slots(&self) -> ConnectionSlots {
        self.slots.clone()
    }

    /// The bound addresses by connection name.
    pub fn local_addrs(&self) -> Vec<(String, SocketAddr)> {
        self.listeners
            .iter()
            .filter_map(|(c, l)| l.local_addr().ok().map(|a| (c.clone(), a)))
            .collect()
    }

    /// Serves until `shutdown` fires; then stops accepting, lets sessions finish for the grace period,
    /// and closes the rest with an error that says why.
    pub async fn run(self, shutdown: CancellationToken) {
        let tracker = TaskTracker::new();
        let force = CancellationToken::new();
        for (name, listener) in self.listeners {
            let slots = self.slots.clone();
            let shared = self.shared.clone();
            let shutdown = shutdown.clone();
            let force = force.clone();
            let sessions = tracker.clone();
            let limit = self.limit.clone();
            tracker.spawn(async move {
                loop {
                    let accepted = tokio::select! {
                        a = listener.accept() => a,
                        () = shutdown.cancelled() => break,
                    };
                    match accepted {
                        Ok((tcp, peer)) => {
                            let local = match tcp.local_addr() {
                                Ok(a) => a,
                                Err(_) => continue,
                            };
                            // The settings in force now; a reload changes them for later sessions.
                            let Some(conn) = slots.current(&name) else {
                                info!(connection = %name, %peer, "connection removed from the configuration: session refused");
                                crate::admin::count_session(&name, "refused");
                                sessions.spawn(refuse_early(tcp, "08004", format!("dbward: connection \"{name}\" is no longer in this sidecar's configuration")));
                                continue;
                            };
                            let Ok(permit) = limit.clone().try_acquire_owned() else {
                                warn!(connection = %name, %peer, "session limit reached: connection refused");
                                crate::admin::count_session(&name, "refused");
                                sessions.spawn(refuse_early(tcp, "53300", "sorry, too many clients already (dbward sidecar session limit)".into()));
                                continue;
                            };
                            let (shared, force) = (shared.clone(), force.clone());
                            sessions.spawn(async move {
                                serve(tcp, peer, local, conn, shared, force).await;
                                drop(permit);
                            });
                        }
                        Err(e) => {
                            // Out of file descriptors and the like: back off instead of spinning.
                            warn!(connection = %name, error = %e, "accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                }
            });
        }
        shutdown.cancelled().await;
        tracker.close();
        let live = tracker.len();
        info!(sessions = live, grace = ?self.grace, "shutting down: no new sessions");
        if tokio::time::timeout(self.grace, tracker.wait()).await.is_err() {
            warn!(
                sessions = tracker.len(),
                "grace period over: closing the remaining sessions"
            );
            force.cancel();
            let _ = tokio::time::timeout(Duration::from_secs(5), tracker.wait()).await;
        }
        info!("all sessions ended");
    }
}

/// Tells a client that cannot be served why before reading anything from it, as PostgreSQL does when
/// max_connections is reached.
async fn refuse_early(mut tcp: TcpStream, code: &'static str, message: String) {
    let mut out = bytes::BytesMut::new();
    Report::fatal(code, &message).encode(&mut out);
    // The client's startup packet is not read: the answer is the same whatever it asked.
    let _ = tokio::time::timeout(Duration::from_secs(2), tcp.write_all(&out)).await;
}

fn ipv6_unavailable(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::AddrNotAvailable | std::io::ErrorKind::Unsupported
    ) || e.raw_os_error() == Some(97) // EAFNOSUPPORT
}
