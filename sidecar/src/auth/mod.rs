//! Upstream authentication: the computations the sidecar needs to log in to PostgreSQL with the
//! credential only it holds.
//!
//! These are pure building blocks with no I/O: the connection code reads the server's
//! `Authentication*` messages, hands their payloads to [`scram::ScramClient`] or [`md5::md5_password`],
//! and writes the returned bytes back in `SASLInitialResponse` / `SASLResponse` / `PasswordMessage`.
//! Cleartext needs no computation (the password is sent as is, which is why it should only ever be
//! used over TLS).

pub mod md5;
pub mod scram;

pub use self::md5::md5_password;
pub use self::scram::{ScramClient, select_mechanism};

/// Why logging in to the upstream server failed on our side of the exchange.
///
/// None of the variants carries the password or any value derived from it.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The server offered only SASL mechanisms we cannot use (we need `SCRAM-SHA-256`).
    #[error(
        "upstream offers SASL mechanisms [{0}], but dbward supports only SCRAM-SHA-256 \
         (check password_encryption on the server)"
    )]
    UnsupportedMechanism(String),

    /// The server asked for an authentication method we do not implement (Kerberos, GSSAPI, SSPI...).
    #[error(
        "upstream requests authentication method {0}, which dbward does not support; use scram-sha-256 \
         (or md5/password) for this role in pg_hba.conf"
    )]
    UnsupportedMethod(&'static str),

    /// The nonce in server-first-message does not extend the nonce we sent: either a broken server
    /// or someone replaying another exchange.
    #[error("SCRAM: the server's nonce does not start with the client nonce")]
    ServerNonceMismatch,

    /// The iteration count is below what RFC 7677 allows or so high that computing the key would
    /// tie up the CPU (a hostile server could otherwise ask for billions of rounds).
    #[error("SCRAM: the server's iteration count {0} is outside the accepted range {min}..={max}",
        min = scram::MIN_ITERATIONS, max = scram::MAX_ITERATIONS)]
    IterationCountOutOfRange(u64),

    /// The server requires a SCRAM extension (`m=`) we do not know, so we must abort (RFC 5802 5.1).
    #[error("SCRAM: the server requires an extension dbward does not support")]
    MandatoryExtension,

    /// The server's proof does not match: it does not know the password, so it is not the server we
    /// meant to talk to. The connection must be dropped even if the server then says `AuthenticationOk`.
    #[error(
        "SCRAM: the server's signature is wrong; it does not know the password (is this the right server?)"
    )]
    BadServerSignature,

    /// The server ended the exchange with a SCRAM `e=` error.
    #[error("SCRAM: the server reported an error: {0}")]
    ServerError(String),

    /// A message was called for out of order (e.g. server-final before server-first).
    #[error("SCRAM: {0}")]
    OutOfOrder(&'static str),

    /// A server message does not follow the grammar; the text says which part.
    #[error("malformed authentication message: {0}")]
    Malformed(&'static str),
}

/// Result of the authentication helpers.
pub type Result<T, E = AuthError> = std::result::Result<T, E>;
