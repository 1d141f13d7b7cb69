//! SCRAM-SHA-256 client (RFC 5802, RFC 7677) as PostgreSQL speaks it.
//!
//! The exchange, carried in `AuthenticationSASL*` / `SASLInitialResponse` / `SASLResponse`:
//!
//! ```text
//! client-first   n,,n=,r=<client nonce>                         (after choosing SCRAM-SHA-256)
//! server-first   r=<client nonce><server nonce>,s=<salt b64>,i=<iterations>
//! client-final   c=biws,r=<full nonce>,p=<proof b64>
//! server-final   v=<server signature b64>        (or e=<error>)
//! ```
//!
//! PostgreSQL specifics this client follows:
//! - The user name in client-first is empty (`n=`): the server takes the role from the startup
//!   message and ignores this field (libpq sends it empty too). [`ScramClient::with_username`] exists
//!   for RFC test vectors and any other server that does want it.
//! - We never do channel binding: the GS2 header is `n,,` ("client does not support channel
//!   binding"), so `c=` is always `biws` (base64 of `n,,`). Sending `y,,` would claim we *could* bind
//!   but think the server cannot, which is wrong when it offers `-PLUS`; `n` is honest and PostgreSQL
//!   accepts it unless the role requires channel binding, which dbward's upstream roles do not.
//! - Passwords are prepared the way PostgreSQL prepares them when it stores the verifier (see
//!   [`prepare_password`]); otherwise a non-ASCII password would derive a different key.
//!
//! [`ScramClient::server_first`] runs PBKDF2 with the server's iteration count (bounded to
//! [`MAX_ITERATIONS`]); at PostgreSQL's default of 4096 that is about a millisecond, at the cap a few
//! seconds, so callers on an async runtime should run it with `spawn_blocking`.

use std::{borrow::Cow, fmt, num::NonZeroU32};

use aws_lc_rs::{digest, hmac, pbkdf2, rand};
use base64::{Engine, engine::general_purpose::STANDARD};

use super::{AuthError, Result};

/// The only SASL mechanism we use. Never `SCRAM-SHA-256-PLUS`: that needs channel binding.
pub const SCRAM_SHA_256: &str = "SCRAM-SHA-256";

/// RFC 7677 section 4: the iteration count SHOULD be at least 4096 (PostgreSQL's default).
pub const MIN_ITERATIONS: u32 = 4096;

/// Upper bound so a hostile or misconfigured server cannot make us burn CPU for minutes.
pub const MAX_ITERATIONS: u32 = 10_000_000;

/// Random bytes in our nonce (base64-encoded to 24 characters). libpq uses 18 as well.
const NONCE_BYTES: usize = 18;

/// GS2 header: no channel binding, no authorization identity.
const GS2_HEADER: &str = "n,,";

/// Longest `e=` text we keep from the server (it ends up in logs).
const MAX_SERVER_ERROR_LEN: usize = 256;

/// Picks the mechanism to answer `AuthenticationSASL` with, or `None` if the server offers nothing
/// we can use. `SCRAM-SHA-256-PLUS` alone is not enough: we do not do channel binding.
pub fn select_mechanism(mechanisms: &[&str]) -> Option<&'static str> {
    mechanisms.contains(&SCRAM_SHA_256).then_some(SCRAM_SHA_256)
}

/// Prepares a password for key derivation the way PostgreSQL does (`pg_saslprep` as used by both
/// libpq and the server when it builds the stored verifier):
///
/// - pure ASCII is used unchanged (PostgreSQL's fast path, even for control characters);
/// - otherwise the full SASLprep profile (RFC 4013: map non-ASCII spaces to space, drop
///   "mapped to nothing" characters, NFKC, reject prohibited, bidi and unassigned code points);
/// - if the bytes are not UTF-8, SASLprep rejects them, or it leaves nothing, the raw bytes are used,
///   because that is what PostgreSQL hashed in those cases too.
///
/// One known, theoretical divergence: PostgreSQL checks prohibited characters before NFKC, the
/// `stringprep` crate after; no assigned character changes class under NFKC in a way that matters
/// for a password, so both end up with the same bytes in practice.
pub fn prepare_password(password: &[u8]) -> Cow<'_, [u8]> {
    let Ok(text) = std::str::from_utf8(password) else {
        return Cow::Borrowed(password);
    };
    if text.is_ascii() {
        return Cow::Borrowed(password);
    }
    match stringprep::saslprep(text) {
        Ok(prepped) if !prepped.is_empty() => match prepped {
            Cow::Borrowed(s) => Cow::Borrowed(s.as_bytes()),
            Cow::Owned(s) => Cow::Owned(s.into_bytes()),
        },
        _ => Cow::Borrowed(password),
    }
}

/// One SCRAM-SHA-256 exchange, from client-first to the check of the server's signature.
///
/// Create one per connection attempt: the nonce must never be reused.
pub struct ScramClient {
    /// The full client-first-message, GS2 header included.
    client_first: Vec<u8>,
    /// Our nonce (printable, no commas).
    nonce: String,
    state: State,
}

enum State {
    /// client-first sent; the prepared password waits for the salt and iteration count.
    Initial { password: Vec<u8> },
    /// client-final sent; what is needed to check server-final. The password is gone.
    ClientFinalSent {
        server_key: hmac::Tag,
        auth_message: Vec<u8>,
    },
}

impl fmt::Debug for ScramClient {
    // Hand-written so the password (or keys derived from it) can never end up in a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::Initial { .. } => "client-first sent",
            State::ClientFinalSent { .. } => "client-final sent",
        };
        f.debug_struct("ScramClient")
            .field("state", &state)
            .finish_non_exhaustive()
    }
}

impl ScramClient {
    /// Starts an exchange for `password` with an empty user name, as PostgreSQL expects.
    pub fn new(password: &str) -> Self {
        Self::from_bytes(password.as_bytes())
    }

    /// Like [`ScramClient::new`] for a password that may not be UTF-8 (e.g. straight from a
    /// Kubernetes Secret); see [`prepare_password`].
    pub fn from_bytes(password: &[u8]) -> Self {
        Self::build("", password, random_nonce())
    }

    /// Starts an exchange that names `username` in client-first (PostgreSQL ignores it).
    pub fn with_username(username: &str, password: &str) -> Self {
        Self::build(username, password.as_bytes(), random_nonce())
    }

    /// Fixed nonce, for test vectors.
    #[cfg(test)]
    pub(crate) fn with_nonce(username: &str, password: &str, nonce: &str) -> Self {
        Self::build(username, password.as_bytes(), nonce.to_owned())
    }

    fn build(username: &str, password: &[u8], nonce: String) -> Self {
        let client_first = format!("{GS2_HEADER}n={},r={nonce}", escape_username(username)).into_bytes();
        let password = prepare_password(password).into_owned();
        Self {
            client_first,
            nonce,
            state: State::Initial { password },
        }
    }

    /// The `SASLInitialResponse` payload (after the mechanism name and length).
    pub fn client_first(&self) -> &[u8] {
        &self.client_first
    }

    /// Processes server-first-message and returns client-final-message (the `SASLResponse` payload).
    pub fn server_first(&mut self, msg: &[u8]) -> Result<Vec<u8>> {
        self.server_first_cached(msg, None)
    }

    /// Like [`ScramClient::server_first`], reusing the salted password from `cache` when the server
    /// sends the same salt and iteration count as last time (it does, for the same role), so that only
    /// the first login of a connection pays for the key derivation (~1 ms at 4096 rounds).
    pub fn server_first_cached(
        &mut self,
        msg: &[u8],
        cache: Option<&SaltedPasswordCache>,
    ) -> Result<Vec<u8>> {
        let State::Initial { password } = &self.state else {
            return Err(AuthError::OutOfOrder("server-first-message received twice"));
        };
        let server_first = ServerFirst::parse(msg, &self.nonce)?;

        let salted_password = match cache {
            Some(c) => c.get_or_derive(password, &server_first.salt, server_first.iterations),
            None => salted_password(password, &server_first.salt, server_first.iterations),
        };
        let salted_key = hmac::Key::new(hmac::HMAC_SHA256, &salted_password);
        let client_key = hmac::sign(&salted_key, b"Client Key");
        let stored_key = digest::digest(&digest::SHA256, client_key.as_ref());
        let server_key = hmac::sign(&salted_key, b"Server Key");

        let client_final_without_proof =
            format!("c={},r={}", STANDARD.encode(GS2_HEADER), server_first.nonce);
        // AuthMessage = client-first-message-bare "," server-first-message "," client-final-without-proof
        let client_first_bare = &self.client_first[GS2_HEADER.len()..];
        let auth_message = [client_first_bare, msg, client_final_without_proof.as_bytes()].join(&b","[..]);

        let client_signature = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, stored_key.as_ref()),
            &auth_message,
        );
        let proof: Vec<u8> = client_key
            .as_ref()
            .iter()
            .zip(client_signature.as_ref())
            .map(|(k, s)| k ^ s)
            .collect();

        self.state = State::ClientFinalSent {
            server_key,
            auth_message,
        };
        Ok(format!("{client_final_without_proof},p={}", STANDARD.encode(proof)).into_bytes())
    }

    /// Checks server-final-message (the `AuthenticationSASLFinal` payload). Only after this returns
    /// `Ok` do we know we talked to a server that knows the password; an `AuthenticationOk` without
    /// it must not be trusted.
    pub fn server_final(&self, msg: &[u8]) -> Result<()> {
        let State::ClientFinalSent {
            server_key,
            auth_message,
        } = &self.state
        else {
            return Err(AuthError::OutOfOrder(
                "server-final-message before server-first-message",
            ));
        };
        let msg = std::str::from_utf8(msg)
            .map_err(|_| AuthError::Malformed("SCRAM server-final-message is not UTF-8"))?;
        if let Some(error) = msg.strip_prefix("e=") {
            return Err(server_error(error));
        }
        let verifier = msg.strip_prefix("v=").ok_or(AuthError::Malformed(
            "SCRAM server-final-message has neither v= nor e=",
        ))?;
        // Extensions may follow after a comma; none are defined, so they are ignored.
        let verifier = verifier.split(',').next().unwrap_or_default();
        let signature = STANDARD
            .decode(verifier)
            .map_err(|_| AuthError::Malformed("SCRAM server signature (v=) is not valid base64"))?;
        // hmac::verify compares in constant time.
        let server_key = hmac::Key::new(hmac::HMAC_SHA256, server_key.as_ref());
        hmac::verify(&server_key, auth_message, &signature).map_err(|_| AuthError::BadServerSignature)
    }
}

/// The salted password of the last exchange for one credential. Holds key material equivalent to the
/// password itself, which the process holds anyway; never printed.
#[derive(Default)]
pub struct SaltedPasswordCache {
    last: std::sync::Mutex<Option<Salted>>,
}

/// Salt, iteration count, and the key derived from them.
type Salted = (Vec<u8>, u32, [u8; 32]);

impl fmt::Debug for SaltedPasswordCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SaltedPasswordCache")
    }
}

impl SaltedPasswordCache {
    fn get_or_derive(&self, password: &[u8], salt: &[u8], iterations: NonZeroU32) -> [u8; 32] {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((s, i, key)) = last.as_ref()
            && s == salt
            && *i == iterations.get()
        {
            return *key;
        }
        let key = salted_password(password, salt, iterations);
        *last = Some((salt.to_vec(), iterations.get(), key));
        key
    }
}

/// The parts of server-first-message we use.
struct ServerFirst<'a> {
    nonce: &'a str,
    salt: Vec<u8>,
    iterations: NonZeroU32,
}

impl<'a> ServerFirst<'a> {
    /// `server-first-message = [reserved-mext ","] nonce "," salt "," iteration-count ["," extensions]`
    fn parse(msg: &'a [u8], client_nonce: &str) -> Result<Self> {
        let msg = std::str::from_utf8(msg)
            .map_err(|_| AuthError::Malformed("SCRAM server-first-message is not UTF-8"))?;
        // Not in the grammar for server-first, but a server that fails early may still say so.
        if let Some(error) = msg.strip_prefix("e=") {
            return Err(server_error(error));
        }
        if msg.starts_with("m=") {
            return Err(AuthError::MandatoryExtension);
        }
        let mut attributes = msg.split(',');
        let nonce = attribute(
            &mut attributes,
            "r=",
            "SCRAM server-first-message has no nonce (r=)",
        )?;
        let salt = attribute(
            &mut attributes,
            "s=",
            "SCRAM server-first-message has no salt (s=)",
        )?;
        let iterations = attribute(
            &mut attributes,
            "i=",
            "SCRAM server-first-message has no iteration count (i=)",
        )?;
        // Anything after i= is an optional extension; none are defined, so they are ignored.

        // The server must extend our nonce with its own part; a copy of ours alone proves nothing.
        if nonce.len() <= client_nonce.len() || !nonce.starts_with(client_nonce) {
            return Err(AuthError::ServerNonceMismatch);
        }
        // printable = %x21-2B / %x2D-7E (no comma, which split already excluded).
        if !nonce.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
            return Err(AuthError::Malformed(
                "SCRAM server nonce contains non-printable characters",
            ));
        }

        let salt = STANDARD
            .decode(salt)
            .map_err(|_| AuthError::Malformed("SCRAM salt (s=) is not valid base64"))?;
        if salt.is_empty() {
            return Err(AuthError::Malformed("SCRAM salt (s=) is empty"));
        }

        if iterations.is_empty() || !iterations.bytes().all(|b| b.is_ascii_digit()) {
            return Err(AuthError::Malformed("SCRAM iteration count (i=) is not a number"));
        }
        // Parse wide so an absurd value is reported as out of range rather than as garbage.
        let count = iterations.parse::<u64>().unwrap_or(u64::MAX);
        let iterations = u32::try_from(count)
            .ok()
            .filter(|i| (MIN_ITERATIONS..=MAX_ITERATIONS).contains(i))
            .and_then(NonZeroU32::new)
            .ok_or(AuthError::IterationCountOutOfRange(count))?;

        Ok(Self {
            nonce,
            salt,
            iterations,
        })
    }
}

/// Takes the next `key=value` attribute, requiring `key`.
fn attribute<'a>(
    attributes: &mut impl Iterator<Item = &'a str>,
    key: &str,
    missing: &'static str,
) -> Result<&'a str> {
    attributes
        .next()
        .and_then(|a| a.strip_prefix(key))
        .ok_or(AuthError::Malformed(missing))
}

/// SaltedPassword := Hi(Normalize(password), salt, i), where Hi is PBKDF2 with HMAC-SHA-256.
fn salted_password(password: &[u8], salt: &[u8], iterations: NonZeroU32) -> [u8; 32] {
    let mut out = [0u8; 32];
    pbkdf2::derive(pbkdf2::PBKDF2_HMAC_SHA256, iterations, salt, password, &mut out);
    out
}

/// RFC 5802 `saslname`: `=` and `,` must be escaped as `=3D` and `=2C`.
fn escape_username(username: &str) -> String {
    username.replace('=', "=3D").replace(',', "=2C")
}

fn random_nonce() -> String {
    let mut bytes = [0u8; NONCE_BYTES];
    rand::fill(&mut bytes).expect("the operating system's random number generator is available");
    // Standard base64 is printable and has no comma, as the nonce grammar requires.
    STANDARD.encode(bytes)
}

/// The server's `e=` text, bounded and stripped of control characters since it goes into logs.
fn server_error(text: &str) -> AuthError {
    AuthError::ServerError(
        text.chars()
            .filter(|c| !c.is_control())
            .take(MAX_SERVER_ERROR_LEN)
            .collect(),
    )
}

#[cfg(test)]
mod tests;
