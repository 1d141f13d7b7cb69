//! How a test server is set up.

/// How the server authenticates TCP connections (from 127.0.0.1 and ::1).
///
/// Connections over the server's unix socket, which the harness itself uses, are always trusted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AuthMethod {
    /// SCRAM-SHA-256, PostgreSQL's default; passwords are stored as SCRAM verifiers.
    #[default]
    ScramSha256,
    /// MD5 challenge-response; passwords are stored as MD5 hashes (`password_encryption = md5`).
    Md5,
    /// Cleartext password; passwords are stored as SCRAM verifiers.
    Password,
    /// No authentication at all.
    Trust,
}

impl AuthMethod {
    /// The method's name in `pg_hba.conf`.
    pub fn hba_name(self) -> &'static str {
        match self {
            AuthMethod::ScramSha256 => "scram-sha-256",
            AuthMethod::Md5 => "md5",
            AuthMethod::Password => "password",
            AuthMethod::Trust => "trust",
        }
    }

    /// The `password_encryption` setting that goes with the method: `md5` for [`AuthMethod::Md5`]
    /// (an MD5-authenticated login needs an MD5-stored password), `scram-sha-256` otherwise.
    pub fn password_encryption(self) -> &'static str {
        match self {
            AuthMethod::Md5 => "md5",
            AuthMethod::ScramSha256 | AuthMethod::Password | AuthMethod::Trust => "scram-sha-256",
        }
    }
}

/// A server certificate and its private key, in PEM. Given to [`PgOptions::tls`], they turn on
/// `ssl = on` with these files as `ssl_cert_file` and `ssl_key_file`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain, leaf first, in PEM.
    pub cert_pem: String,
    /// The certificate's private key in PEM (PKCS#8 or PKCS#1), unencrypted.
    pub key_pem: String,
}

/// How [`TestPostgres::start`](crate::TestPostgres::start) sets up a server.
///
/// The default is SCRAM-SHA-256, no TLS, and the demo schema loaded into `shop`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgOptions {
    /// How TCP connections authenticate.
    pub auth: AuthMethod,
    /// Server certificate and key; `None` leaves TLS off (`ssl = off`).
    pub tls: Option<TlsFiles>,
    /// Whether to load `examples/demo/schema.sql` into database `shop` as the role `app`; the role
    /// and the (then empty) database are created either way.
    pub load_schema: bool,
}

impl Default for PgOptions {
    fn default() -> Self {
        PgOptions {
            auth: AuthMethod::default(),
            tls: None,
            load_schema: true,
        }
    }
}
