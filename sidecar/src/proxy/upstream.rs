//! The connection to the upstream database: TCP, TLS per the connection's mode, and login with the
//! credential only the sidecar holds (SCRAM-SHA-256, md5 or cleartext, as the server asks).

use std::{fmt, sync::Arc, time::Duration};

use bytes::{BufMut, BytesMut};
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::{io::AsyncReadExt, net::TcpStream, time::timeout};
use tokio_rustls::TlsConnector;

use super::{
    io::{ReadError, read_message, send},
    messages::{
        Malformed,
        backend::{self, auth, put_cstr, put_message, tag as be},
        error::{parse_report, sqlstate},
        frontend::tag as fe,
        startup::{encode_ssl_request, encode_startup},
    },
    stream::{MaybeTls, UpstreamStream},
};
use crate::{
    auth::{AuthError, md5::md5_password, scram},
    tls::TlsMode,
};

/// The largest message accepted from the server before the session starts.
const MAX_STARTUP_MESSAGE: usize = 1024 * 1024;

/// A password that never prints.
#[derive(Clone)]
pub struct Password(String);

impl Password {
    pub fn new(p: impl Into<String>) -> Self {
        Self(p.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(***)")
    }
}

/// Everything needed to open an upstream session for one DatabaseConnection.
#[derive(Debug)]
pub struct UpstreamTarget {
    /// The DatabaseConnection's name (for messages).
    pub connection: String,
    pub host: String,
    pub port: u16,
    pub database: String,
    pub user: String,
    pub password: Password,
    pub tls_mode: TlsMode,
    /// The TLS client configuration; `None` for `disable`.
    pub tls: Option<Arc<ClientConfig>>,
    pub server_name: Option<ServerName<'static>>,
    pub connect_timeout: Duration,
    /// The SCRAM key derived for this credential, reused across logins.
    pub scram_cache: scram::SaltedPasswordCache,
}

/// Opening the upstream session failed.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("cannot connect to {host}:{port}: {source}")]
    Connect {
        host: String,
        port: u16,
        #[source]
        source: std::io::Error,
    },
    #[error("connecting to {host}:{port} timed out")]
    Timeout { host: String, port: u16 },
    #[error("the server does not accept TLS, but tls.mode is {0}")]
    TlsRefused(TlsMode),
    #[error("TLS handshake with the server failed: {0}")]
    Tls(#[source] std::io::Error),
    #[error("upstream login failed: {0}")]
    Auth(#[from] AuthError),
    #[error("the server refused the session: {message} (SQLSTATE {code})")]
    Rejected { code: String, message: String },
    #[error("the server sent a {0}")]
    Malformed(#[from] Malformed),
    #[error("the server broke the protocol: {0}")]
    Protocol(&'static str),
    #[error("reading from the server: {0}")]
    Read(#[from] ReadError),
    #[error("writing to the server: {0}")]
    Write(#[source] std::io::Error),
}

impl UpstreamError {
    /// The SQLSTATE a client gets for this failure.
    pub fn sqlstate(&self) -> &str {
        match self {
            UpstreamError::Rejected { code, .. } if !code.is_empty() => code,
            UpstreamError::Connect { .. } | UpstreamError::Timeout { .. } | UpstreamError::Read(_) => {
                sqlstate::CONNECTION_FAILURE
            }
            UpstreamError::Auth(_) => sqlstate::INVALID_AUTHORIZATION,
            _ => sqlstate::CONNECTION_FAILURE,
        }
    }
}

/// An upstream session, logged in and ready for queries.
pub struct Upstream {
    pub stream: UpstreamStream,
    pub facts: LoginFacts,
}

/// What the server told us while logging in.
pub struct LoginFacts {
    /// ParameterStatus and NoticeResponse messages of the startup, to pass on to the client as sent.
    pub startup_messages: BytesMut,
    /// The upstream backend's cancel key.
    pub pid: i32,
    pub secret: i32,
    /// Transaction status of the first ReadyForQuery.
    pub status: u8,
    pub server_version: Option<String>,
}

/// Sends SSLRequest and runs the TLS handshake when the mode asks for TLS.
pub async fn negotiate_tls(
    mut tcp: TcpStream,
    target: &UpstreamTarget,
) -> Result<UpstreamStream, UpstreamError> {
    let (Some(config), Some(name)) = (target.tls.as_ref(), target.server_name.as_ref()) else {
        return Ok(MaybeTls::Plain(tcp));
    };
    let mut req = BytesMut::new();
    encode_ssl_request(&mut req);
    send(&mut tcp, &req).await.map_err(UpstreamError::Write)?;
    let answer = tcp
        .read_u8()
        .await
        .map_err(|e| UpstreamError::Read(ReadError::Io(e)))?;
    match answer {
        b'S' => {
            let tls = TlsConnector::from(config.clone())
                .connect(name.clone(), tcp)
                .await
                .map_err(UpstreamError::Tls)?;
            Ok(MaybeTls::Tls(Box::new(tls)))
        }
        b'N' => Err(UpstreamError::TlsRefused(target.tls_mode)),
        // An ErrorResponse here comes from a pre-3.0 server or a broken proxy; never fall back to plain.
        _ => Err(UpstreamError::Protocol("unexpected answer to SSLRequest")),
    }
}

/// Connects, logs in and reads up to the first ReadyForQuery. `params` are the client's startup
/// parameters to pass on (user and database are the target's own).
pub async fn connect(target: &UpstreamTarget, params: &[(&str, &str)]) -> Result<Upstream, UpstreamError> {
    let tcp = timeout(
        target.connect_timeout,
        TcpStream::connect((target.host.as_str(), target.port)),
    )
    .await
    .map_err(|_| UpstreamError::Timeout {
        host: target.host.clone(),
        port: target.port,
    })?
    .map_err(|source| UpstreamError::Connect {
        host: target.host.clone(),
        port: target.port,
        source,
    })?;
    tcp.set_nodelay(true).ok();
    let mut stream = timeout(target.connect_timeout, negotiate_tls(tcp, target))
        .await
        .map_err(|_| UpstreamError::Timeout {
            host: target.host.clone(),
            port: target.port,
        })??;

    let mut all: Vec<(&str, &str)> = vec![("user", &target.user), ("database", &target.database)];
    all.extend(params.iter().filter(|(k, _)| *k != "user" && *k != "database"));
    let mut out = BytesMut::new();
    encode_startup(&mut out, &all);
    send(&mut stream, &out).await.map_err(UpstreamError::Write)?;
    let facts = login(&mut stream, target).await?;
    Ok(Upstream { stream, facts })
}

/// The login exchange, up to the first ReadyForQuery.
async fn login(stream: &mut UpstreamStream, target: &UpstreamTarget) -> Result<LoginFacts, UpstreamError> {
    let mut buf = BytesMut::new();
    let mut out = BytesMut::new();
    let mut scram: Option<scram::ScramClient> = None;
    let mut scram_done = false;
    let mut authenticated = false;
    let mut startup_messages = BytesMut::new();
    let mut key = None;
    let mut server_version = None;
    loop {
        let (tag, body) = read_message(stream, &mut buf, MAX_STARTUP_MESSAGE).await?;
        out.clear();
        match tag {
            be::AUTHENTICATION => {
                let (code, rest) = backend::authentication(&body)?;
                if authenticated {
                    return Err(UpstreamError::Protocol(
                        "authentication request after AuthenticationOk",
                    ));
                }
                match code {
                    auth::OK => {
                        if scram.is_some() && !scram_done {
                            // A server that skips SCRAM's final proof has not shown it knows the password.
                            return Err(UpstreamError::Protocol("AuthenticationOk before SCRAM completed"));
                        }
                        authenticated = true;
                        continue;
                    }
                    auth::CLEARTEXT_PASSWORD => {
                        put_message(&mut out, fe::PASSWORD, |b| put_cstr(b, target.password.expose()));
                    }
                    auth::MD5_PASSWORD => {
                        let salt: [u8; 4] = rest.try_into().map_err(|_| Malformed {
                            message: "AuthenticationMD5Password",
                            problem: "salt is not 4 bytes",
                        })?;
                        let hashed = md5_password(&target.user, target.password.expose(), salt);
                        put_message(&mut out, fe::PASSWORD, |b| put_cstr(b, &hashed));
                    }
                    auth::SASL => {
                        let mechanisms = backend::sasl_mechanisms(rest)?;
                        let mechanism = scram::select_mechanism(&mechanisms)
                            .ok_or_else(|| AuthError::UnsupportedMechanism(mechanisms.join(", ")))?;
                        let client = scram::ScramClient::new(target.password.expose());
                        let first = client.client_first();
                        put_message(&mut out, fe::PASSWORD, |b| {
                            put_cstr(b, mechanism);
                            b.put_i32(i32::try_from(first.len()).unwrap_or(i32::MAX));
                            b.extend_from_slice(first);
                        });
                        scram = Some(client);
                    }
                    auth::SASL_CONTINUE => {
                        let client = scram
                            .as_mut()
                            .ok_or(UpstreamError::Protocol("SASLContinue without SASL"))?;
                        let last = client.server_first_cached(rest, Some(&target.scram_cache))?;
                        put_message(&mut out, fe::PASSWORD, |b| b.extend_from_slice(&last));
                    }
                    auth::SASL_FINAL => {
                        let client = scram
                            .as_ref()
                            .ok_or(UpstreamError::Protocol("SASLFinal without SASL"))?;
                        client.server_final(rest)?;
                        scram_done = true;
                        continue;
                    }
                    auth::KERBEROS_V5 => return Err(AuthError::UnsupportedMethod("Kerberos V5").into()),
                    auth::GSS | auth::GSS_CONTINUE => {
                        return Err(AuthError::UnsupportedMethod("GSSAPI").into());
                    }
                    auth::SSPI => return Err(AuthError::UnsupportedMethod("SSPI").into()),
                    _ => return Err(UpstreamError::Protocol("unknown authentication request")),
                }
                send(stream, &out).await.map_err(UpstreamError::Write)?;
            }
            be::ERROR_RESPONSE => {
                let r = parse_report(&body)?;
                return Err(UpstreamError::Rejected {
                    code: r.code.to_owned(),
                    message: r.message.to_owned(),
                });
            }
            be::NEGOTIATE_PROTOCOL_VERSION => {
                // We ask for 3.0 without protocol options; a server may still say so. Nothing to change.
            }
            be::PARAMETER_STATUS if authenticated => {
                let (name, value) = backend::parameter(&body)?;
                if name == "server_version" {
                    server_version = Some(value.to_owned());
                }
                put_message(&mut startup_messages, be::PARAMETER_STATUS, |b| {
                    b.extend_from_slice(&body)
                });
            }
            be::NOTICE_RESPONSE => {
                put_message(&mut startup_messages, be::NOTICE_RESPONSE, |b| {
                    b.extend_from_slice(&body)
                });
            }
            be::BACKEND_KEY_DATA if authenticated => key = Some(backend::backend_key(&body)?),
            be::READY_FOR_QUERY if authenticated => {
                let status = backend::ready_status(&body)?;
                let (pid, secret) =
                    key.ok_or(UpstreamError::Protocol("no BackendKeyData before ReadyForQuery"))?;
                if !buf.is_empty() {
                    return Err(UpstreamError::Protocol("data after the first ReadyForQuery"));
                }
                return Ok(LoginFacts {
                    startup_messages,
                    pid,
                    secret,
                    status,
                    server_version,
                });
            }
            _ => return Err(UpstreamError::Protocol("unexpected message during login")),
        }
    }
}

/// Runs `SHOW name` on a fresh session (before any client message) and returns the value. The answer
/// is read up to its ReadyForQuery, so the session is left as it was.
pub async fn show_setting(stream: &mut UpstreamStream, name: &str) -> Result<String, UpstreamError> {
    const MAX_ANSWER: usize = 1 << 20;
    let mut out = BytesMut::new();
    crate::proxy::messages::backend::put_message(&mut out, b'Q', |b| {
        crate::proxy::messages::backend::put_cstr(b, &format!("SHOW {name}"));
    });
    send(stream, &out).await.map_err(UpstreamError::Write)?;
    let mut buf = BytesMut::new();
    let mut value = None;
    let mut failed = None;
    loop {
        let (tag, body) = read_message(stream, &mut buf, MAX_ANSWER).await?;
        match tag {
            // One column: count (2), length (4), bytes.
            b'D' if body.len() >= 6 => {
                let len = i32::from_be_bytes([body[2], body[3], body[4], body[5]]);
                if let Ok(len) = usize::try_from(len)
                    && let Some(v) = body.get(6..6 + len)
                {
                    value = Some(String::from_utf8_lossy(v).into_owned());
                }
            }
            b'E' => {
                let report = crate::proxy::messages::error::parse_report(&body)
                    .map(|r| (r.code.to_owned(), r.message.to_owned()))
                    .unwrap_or_default();
                failed = Some(report);
            }
            b'Z' => break,
            _ => {}
        }
    }
    if let Some((code, message)) = failed {
        return Err(UpstreamError::Rejected { code, message });
    }
    value.ok_or(UpstreamError::Protocol("SHOW returned no value"))
}
