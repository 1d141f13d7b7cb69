//! One client session: startup and TLS toward the client, the caller's identity, the upstream login,
//! then the relay.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use bytes::BytesMut;
use tokio::{io::AsyncWriteExt, net::TcpStream, time::timeout};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::signals::SessionSignals;
use super::{
    RelayError,
    cancel::{CancelRegistry, CancelTarget},
    hook::{Hooks, SessionHooks, SessionInfo},
    io::{ReadError, read_message, read_packet, send},
    messages::{
        backend,
        error::{Report, sqlstate},
        frontend::{self, tag as fe},
        startup::{MAX_STARTUP_PACKET, Opening, Startup, parse_opening},
    },
    relay::{RelayEnd, RelayLimits, RelaySession, relay},
    stream::{ClientStream, MaybeTls},
    upstream::{self, UpstreamTarget},
};
use crate::identity::{CallerIdentity, TokenVerifier, peer_uid};
use crate::journal::{Journal, SessionLog, event};

/// The client user name that says "my password is a token" when ambient identity is allowed.
pub const TOKEN_USER: &str = "jwt";
/// The longest password (token) a client may send.
const MAX_PASSWORD_MESSAGE: usize = 64 * 1024;

/// One DatabaseConnection as its listener serves it.
pub struct ConnectionContext {
    pub name: String,
    pub upstream: Arc<UpstreamTarget>,
    pub allow_ambient: bool,
    /// Verifies caller tokens; `None` when the connection trusts no issuer.
    pub verifier: Option<Arc<TokenVerifier>>,
    /// What this context was built from, to tell a reload's changes apart.
    pub fingerprint: super::slots::Fingerprint,
}

/// What all sessions of the process share.
pub struct SessionShared {
    pub ambient: CallerIdentity,
    pub client_tls: Option<TlsAcceptor>,
    pub cancels: Arc<CancelRegistry>,
    pub hooks: Option<Arc<dyn SessionHooks>>,
    pub limits: RelayLimits,
    /// Time allowed from accept to the end of login, as PostgreSQL's authentication_timeout.
    pub startup_timeout: Duration,
    /// The session journal, when the sidecar keeps one.
    pub journal: Option<Arc<Journal>>,
    /// Told of every successful login to a database.
    pub logins: Option<Arc<dyn LoginObserver>>,
}

/// Learns what a database announced when the sidecar logged in to it.
pub trait LoginObserver: Send + Sync {
    /// The server of `connection` reported `server_version` (its ParameterStatus) at a login. Called
    /// on every login: it must return at once.
    fn server_version(&self, connection: &str, server_version: &str);
}

/// Why a session could not start; each becomes a FATAL error for the client.
struct Refusal {
    code: &'static str,
    message: String,
    hint: Option<String>,
}

impl Refusal {
    fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            hint: None,
        }
    }

    fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

impl From<ReadError> for Refusal {
    fn from(e: ReadError) -> Self {
        Refusal::new(sqlstate::PROTOCOL_VIOLATION, format!("invalid startup: {e}"))
    }
}

impl From<super::Malformed> for Refusal {
    fn from(e: super::Malformed) -> Self {
        Refusal::new(sqlstate::PROTOCOL_VIOLATION, e.to_string())
    }
}

/// Serves one accepted connection to its end. Errors end only this session.
pub async fn serve(
    tcp: TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
    conn: Arc<ConnectionContext>,
    shared: Arc<SessionShared>,
    force_close: CancellationToken,
) {
    tcp.set_nodelay(true).ok();
    // The socket table is read synchronously from /proc: keep it off the event loop.
    let uid = tokio::task::spawn_blocking(move || peer_uid(local, peer).ok().flatten())
        .await
        .ok()
        .flatten();
    let mut buf = BytesMut::new();
    let started = timeout(shared.startup_timeout, start(tcp, &mut buf, &conn, &shared, uid)).await;
    let (mut client, startup) = match started {
        Ok(Ok(Some(s))) => s,
        Ok(Ok(None)) => return,
        Ok(Err((client, refusal))) => {
            if let Some(mut c) = client {
                refuse(&mut c, &refusal).await;
            }
            info!(connection = %conn.name, %peer, code = refusal.code, reason = %refusal.message, "session refused");
            crate::admin::count_session(&conn.name, "refused");
            journal_refusal(shared.journal.as_deref(), &conn.name, peer, uid, None, &refusal);
            return;
        }
        Err(_) => {
            debug!(connection = %conn.name, %peer, "startup timed out");
            return;
        }
    };
    let Started {
        identity,
        mut upstream,
        client_user,
        application_name,
        settings,
    } = startup;
    if let (Some(logins), Some(version)) = (&shared.logins, &upstream.facts.server_version) {
        logins.server_version(&conn.name, version);
    }
    // The policy engine resolves names through the session's search_path: learn where it starts.
    let search_path = if shared.hooks.is_some() {
        match timeout(
            shared.startup_timeout,
            upstream::show_setting(&mut upstream.stream, "search_path"),
        )
        .await
        {
            Ok(Ok(p)) => Some(p),
            Ok(Err(e)) => {
                warn!(connection = %conn.name, error = %e, "could not read the session's search_path; names resolve through every schema");
                None
            }
            Err(_) => {
                warn!(connection = %conn.name, "reading the session's search_path timed out");
                return;
            }
        }
    } else {
        None
    };
    // The session is on record before the client may send anything; a journal that cannot be written
    // refuses the session.
    let log = shared
        .journal
        .as_ref()
        .map(|j| Arc::new(SessionLog::new(j.clone(), crate::journal::new_session_id())));
    if let Some(log) = &log {
        let start = event::SessionStart {
            time: event::Time(std::time::SystemTime::now()),
            event: "sessionStart",
            session: log.id(),
            connection: &conn.name,
            caller: event::Caller::of(&identity),
            peer: peer.to_string(),
            client_user: &client_user,
            application_name: &application_name,
        };
        if let Err(e) = log.record_now(|buf| event::session_start(buf, &start)) {
            let refusal = Refusal::new(
                sqlstate::IO_ERROR,
                format!("dbward: the session journal cannot be written, so sessions are refused: {e}"),
            );
            warn!(connection = %conn.name, caller = %identity, error = %e, "session refused: the journal cannot be written");
            crate::admin::count_session(&conn.name, "refused");
            refuse(&mut client, &refusal).await;
            return;
        }
    }
    info!(connection = %conn.name, caller = %identity, application_name = %application_name, session = log.as_ref().map_or("", |l| l.id()), "session started");
    crate::admin::count_session(&conn.name, "started");
    let _open = crate::admin::OpenSession::new();
    let signals = SessionSignals::default();
    let key = shared.cancels.register(CancelTarget {
        upstream: conn.upstream.clone(),
        pid: upstream.facts.pid,
        secret: upstream.facts.secret,
        signals: Some(signals.clone()),
    });
    let mut hello = BytesMut::new();
    backend::authentication_ok(&mut hello);
    hello.extend_from_slice(&upstream.facts.startup_messages);
    backend::backend_key_data(&mut hello, key.pid, key.secret);
    backend::ready_for_query(&mut hello, upstream.facts.status);
    if send(&mut client, &hello).await.is_err() {
        return;
    }

    let hooks = match shared.hooks.as_ref() {
        Some(h) => h.open(&SessionInfo {
            connection: conn.name.clone(),
            identity: identity.clone(),
            peer,
            client_user,
            application_name,
            search_path,
            settings,
            signals: signals.clone(),
            journal: log.clone(),
        }),
        None => Hooks::default(),
    };
    let mut server = upstream.stream;
    // On forced shutdown the relay is asked to stop at the next message boundary toward the client, so
    // the closing error never lands inside a half-forwarded message.
    let stop = Arc::new(AtomicBool::new(false));
    let session = RelaySession {
        client_buffered: buf,
        limits: shared.limits.clone(),
        hooks,
        nonce: session_nonce(),
        shutdown: stop.clone(),
        signals: shared.hooks.is_some().then_some(signals),
    };
    let relayed = {
        let (client_io, server_io) = (&mut client, &mut server);
        let relaying = async move {
            match (client_io, server_io) {
                (MaybeTls::Plain(c), MaybeTls::Plain(s)) => {
                    let (mut cr, mut cw) = c.split();
                    let (mut sr, mut sw) = s.split();
                    relay(&mut cr, &mut cw, &mut sr, &mut sw, session).await
                }
                (c, s) => {
                    let (mut cr, mut cw) = tokio::io::split(c);
                    let (mut sr, mut sw) = tokio::io::split(s);
                    relay(&mut cr, &mut cw, &mut sr, &mut sw, session).await
                }
            }
        };
        tokio::pin!(relaying);
        tokio::select! {
            r = &mut relaying => Some(r),
            () = force_close.cancelled() => {
                stop.store(true, Ordering::Release);
                // Stuck in the middle of a large message to a slow client: give up without the error.
                timeout(Duration::from_secs(5), &mut relaying).await.ok()
            }
        }
    };
    if let Some(log) = &log {
        let (reason, error) = match &relayed {
            Some(Ok(RelayEnd::ClientClosed)) => ("clientClosed", None),
            Some(Ok(RelayEnd::ClientTerminated)) => ("clientTerminated", None),
            Some(Ok(RelayEnd::ServerClosed)) => ("serverClosed", None),
            Some(Ok(RelayEnd::Shutdown)) | None => ("shutdown", None),
            Some(Err(e)) => ("error", Some(e.to_string())),
        };
        let ms = u64::try_from(log.started().elapsed().as_millis()).unwrap_or(u64::MAX);
        let statements = log.statements();
        let written = log.record_now(|buf| {
            event::session_end(buf, log.id(), ms, statements, reason, error.as_deref());
        });
        if let Err(e) = written {
            warn!(session = log.id(), error = %e, "could not write the end of the session to the journal");
        }
    }
    match relayed {
        Some(Ok(RelayEnd::Shutdown)) => {
            let msg = "terminating connection because the dbward sidecar is shutting down";
            refuse(&mut client, &Refusal::new(sqlstate::ADMIN_SHUTDOWN, msg)).await;
        }
        Some(Ok(end)) => {
            if end == RelayEnd::ServerClosed {
                debug!(connection = %conn.name, "server closed the session");
            }
        }
        Some(Err(e)) => {
            let (code, who) = match &e {
                RelayError::Read(_) | RelayError::Write(_) => (None, "connection"),
                RelayError::UpstreamMalformed(_) => (Some(sqlstate::PROTOCOL_VIOLATION), "server"),
                RelayError::TooLarge { .. } | RelayError::State(_) => {
                    (Some(sqlstate::PROGRAM_LIMIT_EXCEEDED), "client")
                }
                RelayError::Journal(_) => (Some(sqlstate::IO_ERROR), "journal"),
                _ => (Some(sqlstate::PROTOCOL_VIOLATION), "client"),
            };
            warn!(connection = %conn.name, caller = %identity, error = %e, source = who, "session ended by an error");
            if let Some(code) = code {
                let message = format!("dbward: {e}");
                refuse(&mut client, &Refusal::new(code, message)).await;
            }
        }
        None => {
            debug!(connection = %conn.name, "shutdown: a message to the client was still being forwarded")
        }
    }
    // Tell the server we are leaving, then close both ends.
    let mut bye = BytesMut::new();
    backend::put_message(&mut bye, fe::TERMINATE, |_| {});
    let _ = timeout(Duration::from_secs(1), server.write_all(&bye)).await;
    let _ = timeout(Duration::from_secs(1), server.shutdown()).await;
    let _ = timeout(Duration::from_secs(1), client.shutdown()).await;
    info!(connection = %conn.name, caller = %identity, "session ended");
    drop(key);
}

struct Started {
    identity: CallerIdentity,
    upstream: upstream::Upstream,
    client_user: String,
    application_name: String,
    settings: Vec<(String, String)>,
}

type StartResult = Result<Option<(ClientStream, Started)>, (Option<ClientStream>, Refusal)>;

/// Startup up to a logged-in upstream. `Ok(None)` when the connection only carried a cancel request.
async fn start(
    tcp: TcpStream,
    buf: &mut BytesMut,
    conn: &ConnectionContext,
    shared: &SessionShared,
    uid: Option<u32>,
) -> StartResult {
    let mut client: ClientStream = MaybeTls::Plain(tcp);
    let mut tls_tried = false;
    let mut gss_tried = false;
    let packet = loop {
        let packet = match read_packet(&mut client, buf, MAX_STARTUP_PACKET).await {
            Ok(p) => p,
            Err(ReadError::Eof) => return Ok(None),
            Err(e) => return Err((Some(client), e.into())),
        };
        match parse_opening(&packet) {
            Ok(Opening::SslRequest) if !tls_tried && !client.is_tls() => {
                tls_tried = true;
                if has_unread_data(&client, buf) {
                    // Bytes sent after SSLRequest but before our answer could have been injected by a
                    // man in the middle (CVE-2021-23222): refuse them, as PostgreSQL does.
                    let r = Refusal::new(
                        sqlstate::PROTOCOL_VIOLATION,
                        "received unencrypted data after SSL request",
                    );
                    return Err((Some(client), r));
                }
                client = match (client, shared.client_tls.as_ref()) {
                    (MaybeTls::Plain(mut tcp), Some(acceptor)) => {
                        if tcp.write_all(b"S").await.is_err() {
                            return Ok(None);
                        }
                        match acceptor.accept(tcp).await {
                            Ok(tls) => MaybeTls::Tls(Box::new(tls)),
                            Err(e) => {
                                debug!(error = %e, "client TLS handshake failed");
                                return Ok(None);
                            }
                        }
                    }
                    (mut c, _) => {
                        if c.write_all(b"N").await.is_err() {
                            return Ok(None);
                        }
                        c
                    }
                };
            }
            Ok(Opening::GssEncRequest) if !gss_tried && !client.is_tls() => {
                gss_tried = true;
                if has_unread_data(&client, buf) {
                    let r = Refusal::new(
                        sqlstate::PROTOCOL_VIOLATION,
                        "received unencrypted data after GSSAPI encryption request",
                    );
                    return Err((Some(client), r));
                }
                if client.write_all(b"N").await.is_err() {
                    return Ok(None);
                }
            }
            Ok(Opening::Cancel { pid, secret }) => {
                shared.cancels.cancel(pid, secret).await;
                return Ok(None);
            }
            Ok(Opening::Startup(_)) => break packet,
            Ok(_) => {
                let r = Refusal::new(sqlstate::PROTOCOL_VIOLATION, "unexpected encryption request");
                return Err((Some(client), r));
            }
            Err(e) => return Err((Some(client), e.into())),
        }
    };
    let Ok(Opening::Startup(startup)) = parse_opening(&packet) else {
        unreachable!("checked in the loop above")
    };
    match login(&mut client, buf, &startup, conn, shared, uid).await {
        Ok(started) => Ok(Some((client, started))),
        Err(r) => Err((Some(client), r)),
    }
}

/// Whether the client sent more than the packet just read: bytes already buffered, or waiting in the
/// socket. Checked before answering an encryption request.
fn has_unread_data(client: &ClientStream, buf: &BytesMut) -> bool {
    if !buf.is_empty() {
        return true;
    }
    let mut probe = [0u8; 1];
    match client {
        MaybeTls::Plain(tcp) => matches!(tcp.try_read(&mut probe), Ok(n) if n > 0),
        MaybeTls::Tls(_) => false,
    }
}

/// Parameters a client may not pass through to the server.
fn passes_through(name: &str) -> bool {
    !matches!(name, "user" | "database" | "replication") && !name.starts_with("_pq_.")
}

async fn login(
    client: &mut ClientStream,
    buf: &mut BytesMut,
    startup: &Startup<'_>,
    conn: &ConnectionContext,
    shared: &SessionShared,
    uid: Option<u32>,
) -> Result<Started, Refusal> {
    let user = startup.get("user").unwrap_or_default();
    if user.is_empty() {
        return Err(Refusal::new(
            sqlstate::INVALID_AUTHORIZATION,
            "no PostgreSQL user name specified in startup packet",
        ));
    }
    if startup
        .get("replication")
        .is_some_and(|r| !matches!(r, "false" | "off" | "no" | "0"))
    {
        return Err(Refusal::new(
            sqlstate::FEATURE_NOT_SUPPORTED,
            "replication connections are not supported through dbward",
        ));
    }
    // libpq's default database is the user name.
    let database = startup.get("database").filter(|d| !d.is_empty()).unwrap_or(user);
    if database != conn.name && database != conn.upstream.database {
        return Err(Refusal::new(
            sqlstate::INVALID_CATALOG_NAME,
            format!("database \"{database}\" is not served on this port"),
        )
        .hint(format!(
            "this dbward listener serves connection \"{}\"; connect with dbname={} (or {})",
            conn.name, conn.name, conn.upstream.database
        )));
    }
    let options = startup.protocol_options();
    if startup.minor > 0 || !options.is_empty() {
        let mut out = BytesMut::new();
        backend::negotiate_protocol_version(&mut out, 0, &options);
        send(client, &out)
            .await
            .map_err(|_| Refusal::new(sqlstate::CONNECTION_FAILURE, "client went away"))?;
    }

    let identity = identify(client, buf, user, conn, shared).await?.with_uid(uid);

    let params: Vec<(&str, &str)> = startup
        .params
        .iter()
        .copied()
        .filter(|(k, _)| passes_through(k))
        .collect();
    let settings = match shared.hooks.as_ref() {
        Some(h) => h
            .upstream_params(&conn.name, &identity, &params)
            .map_err(|e| Refusal::new(sqlstate::INSUFFICIENT_PRIVILEGE, e))?,
        None => params
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    };
    let params: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let upstream = upstream::connect(&conn.upstream, &params).await.map_err(|e| {
        warn!(connection = %conn.name, error = %e, "upstream session failed");
        crate::admin::metrics()
            .upstream_failures
            .with_label_values(&[&conn.name])
            .inc();
        let r = Refusal::new(leak_code(e.sqlstate()), format!("dbward: connection \"{}\": {e}", conn.name));
        match e {
            upstream::UpstreamError::Connect { .. } | upstream::UpstreamError::Timeout { .. } => {
                r.hint("the database may be down or unreachable from this pod; the sidecar will retry on the next connection")
            }
            _ => r,
        }
    })?;
    Ok(Started {
        identity,
        upstream,
        client_user: user.to_owned(),
        application_name: startup.get("application_name").unwrap_or_default().to_owned(),
        settings,
    })
}

/// SQLSTATEs from the server are passed on; anything else becomes a connection failure.
fn leak_code(code: &str) -> &'static str {
    match code {
        sqlstate::INVALID_AUTHORIZATION => sqlstate::INVALID_AUTHORIZATION,
        sqlstate::INVALID_PASSWORD => sqlstate::INVALID_PASSWORD,
        sqlstate::INVALID_CATALOG_NAME => sqlstate::INVALID_CATALOG_NAME,
        sqlstate::CANNOT_CONNECT_NOW => sqlstate::CANNOT_CONNECT_NOW,
        "53300" => "53300",
        _ => sqlstate::CONNECTION_FAILURE,
    }
}

/// Who is calling: a verified token given as the password, or the pod's ambient identity.
async fn identify(
    client: &mut ClientStream,
    buf: &mut BytesMut,
    user: &str,
    conn: &ConnectionContext,
    shared: &SessionShared,
) -> Result<CallerIdentity, Refusal> {
    let wants_token = !conn.allow_ambient || user == TOKEN_USER;
    if !wants_token {
        return Ok(shared.ambient.clone());
    }
    let Some(verifier) = conn.verifier.as_ref() else {
        let refusal = if conn.allow_ambient {
            Refusal::new(
                sqlstate::INVALID_AUTHORIZATION,
                format!("connection \"{}\" trusts no token issuer, so user \"{TOKEN_USER}\" cannot present a token", conn.name),
            )
            .hint("connect with any other user name to use the pod's own identity, or add spec.identity.issuers to the DatabaseConnection")
        } else {
            Refusal::new(
                sqlstate::INVALID_AUTHORIZATION,
                format!(
                    "connection \"{}\" trusts no token issuer and does not allow the pod's own identity",
                    conn.name
                ),
            )
            .hint("add spec.identity.issuers to the DatabaseConnection, or set spec.identity.allowAmbient")
        };
        return Err(refusal);
    };
    let mut out = BytesMut::new();
    backend::authentication_cleartext(&mut out);
    send(client, &out)
        .await
        .map_err(|_| Refusal::new(sqlstate::CONNECTION_FAILURE, "client went away"))?;
    let (tag, body) = match read_message(client, buf, MAX_PASSWORD_MESSAGE).await {
        Ok(m) => m,
        Err(ReadError::Eof) => {
            return Err(Refusal::new(
                sqlstate::INVALID_PASSWORD,
                "the client closed the connection instead of sending a token",
            ));
        }
        Err(e) => return Err(e.into()),
    };
    if tag != fe::PASSWORD {
        return Err(Refusal::new(
            sqlstate::PROTOCOL_VIOLATION,
            "expected a password message",
        ));
    }
    let token = frontend::password(&body)?;
    if token.is_empty() {
        return Err(Refusal::new(sqlstate::INVALID_PASSWORD, "empty token"));
    }
    verifier.verify(token).await.map_err(|e| {
        info!(connection = %conn.name, error = %e, "caller token refused");
        let code = if e.sqlstate() == sqlstate::INVALID_PASSWORD {
            sqlstate::INVALID_PASSWORD
        } else {
            sqlstate::INVALID_AUTHORIZATION
        };
        Refusal::new(code, e.client_message())
    })
}

async fn refuse(client: &mut ClientStream, r: &Refusal) {
    let mut out = BytesMut::new();
    let mut report = Report::fatal(r.code, &r.message);
    if let Some(h) = r.hint.as_deref() {
        report = report.with_hint(h);
    }
    report.encode(&mut out);
    let _ = timeout(Duration::from_secs(2), send(client, &out)).await;
}

/// 128 random bits, hex: marks this session's sentinel statements.
fn session_nonce() -> String {
    let mut b = [0u8; 16];
    let _ = aws_lc_rs::rand::fill(&mut b);
    crate::hex::encode(&b)
}

/// Records a session that never started.
fn journal_refusal(
    journal: Option<&Journal>,
    connection: &str,
    peer: SocketAddr,
    uid: Option<u32>,
    subject: Option<&str>,
    refusal: &Refusal,
) {
    let Some(journal) = journal else { return };
    let id = crate::journal::new_session_id();
    let mut buf = Vec::new();
    event::session_refused(
        &mut buf,
        &event::SessionRefused {
            time: event::Time(std::time::SystemTime::now()),
            event: "sessionRefused",
            session: &id,
            connection,
            peer: peer.to_string(),
            uid,
            subject,
            error: event::ErrorNote {
                code: refusal.code,
                message: &refusal.message,
            },
        },
    );
    if let Err(e) = journal.append(&buf) {
        warn!(error = %e, "could not write a refused session to the journal");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_parameters_that_pass() {
        for p in [
            "application_name",
            "options",
            "DateStyle",
            "client_encoding",
            "search_path",
        ] {
            assert!(passes_through(p), "{p}");
        }
        for p in ["user", "database", "replication", "_pq_.anything"] {
            assert!(!passes_through(p), "{p}");
        }
    }

    #[test]
    fn nonce_is_unique_hex() {
        let a = session_nonce();
        assert_eq!(a.len(), 32);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, session_nonce());
    }

    #[test]
    fn server_codes_are_passed_on_only_when_meaningful() {
        assert_eq!(leak_code("28P01"), "28P01");
        assert_eq!(leak_code("XX000"), sqlstate::CONNECTION_FAILURE);
    }
}
