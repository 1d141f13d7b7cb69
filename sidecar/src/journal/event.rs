//! The journal's events, one JSON object per line. Field names are camelCase, as in the API; every
//! event has `time` (RFC 3339 UTC, milliseconds), `event` and `session`. Encoding writes straight into
//! the caller's buffer: a warm buffer makes an event cost no allocation.
//!
//! The events, in the order a session writes them:
//! - `sessionStart`: `connection`, `caller` (`kind`, `subject`, `issuer`, `serviceAccount`, `pod`,
//!   `uid`), `peer`, `clientUser`, `applicationName`.
//! - `statement`: `seq` (1, 2, ... within the session), `protocol` (`simple`, `extended`,
//!   `functionCall`), `text` (at most [`MAX_TEXT`] bytes; `textBytes` gives the full length when cut),
//!   `params` (how many parameters were bound; never their values), `decision` (`allow`, `deny`,
//!   `requireApproval`), `rule` (`<namespace>/<policy>/<rule>` that decided, when one did), `audit`
//!   (what an audit-only policy would have done), `error` (`code`, `message`: the refusal the client
//!   got), `approval` (`request`, `outcome`, `decidedBy`).
//! - `approval`: a held statement's request: `request`, `stage` (`requested`, `approved`, `denied`,
//!   `expired`, `cancelled`, `asked`, `granted`, `failed`), `mode`, `rule`, `reused`, `expiresAt`,
//!   `decidedBy`, `reason`, `waitedMs`.
//! - `result`: `seq` of its statement, `status` (`ok`, `error`, `suspended` at a row limit of the
//!   client's, `skipped` after an earlier error of its batch), `durationUs` (from forwarding to the end
//!   of the result), `rows` (from the command tag), `command`, `bytes` (sent to the client), `error`.
//! - `sessionEnd`: `durationMs`, `statements`, `reason`, `error`.
//! - `sessionRefused` (a session that never started: bad startup, failed identity, limits): `connection`,
//!   `peer`, `uid`, `subject` when known, `error`.
//! - `journalGap` (stdout only): `dropped` lines stdout could not take in time.

use std::time::SystemTime;

use serde::{Serialize, Serializer};

use dbward_crds::Rfc3339Millis;

/// Statement texts are recorded up to this many bytes.
pub const MAX_TEXT: usize = 64 * 1024;

/// A timestamp, serialized as RFC 3339 with milliseconds without allocating.
#[derive(Debug, Clone, Copy)]
pub struct Time(pub SystemTime);

impl Serialize for Time {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&Rfc3339Millis(self.0))
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// Appends one event and its newline.
fn line<T: Serialize>(buf: &mut Vec<u8>, event: &T) {
    let start = buf.len();
    if serde_json::to_writer(&mut *buf, event).is_err() {
        // Serializing these plain structs into a Vec cannot fail; never leave half a line behind.
        buf.truncate(start);
        return;
    }
    buf.push(b'\n');
}

/// The caller as `sessionStart` records it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Caller<'a> {
    pub kind: &'static str,
    pub subject: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issuer: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_account: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
}

impl<'a> Caller<'a> {
    pub fn of(identity: &'a crate::identity::CallerIdentity) -> Self {
        Self {
            kind: match identity.kind {
                crate::identity::IdentityKind::Ambient => "ambient",
                crate::identity::IdentityKind::Token => "token",
            },
            subject: &identity.subject,
            issuer: identity.issuer.as_deref(),
            service_account: identity
                .service_account
                .as_ref()
                .map(|sa| format!("{}/{}", sa.namespace, sa.name)),
            pod: identity.pod.as_deref(),
            uid: identity.uid,
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionStart<'a> {
    pub time: Time,
    pub event: &'static str,
    pub session: &'a str,
    pub connection: &'a str,
    pub caller: Caller<'a>,
    pub peer: String,
    pub client_user: &'a str,
    pub application_name: &'a str,
}

pub fn session_start(buf: &mut Vec<u8>, e: &SessionStart<'_>) {
    line(buf, e);
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct SessionEnd<'a> {
    time: Time,
    event: &'static str,
    session: &'a str,
    duration_ms: u64,
    statements: u64,
    reason: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
}

pub fn session_end(
    buf: &mut Vec<u8>,
    session: &str,
    duration_ms: u64,
    statements: u64,
    reason: &str,
    error: Option<&str>,
) {
    line(
        buf,
        &SessionEnd {
            time: Time(SystemTime::now()),
            event: "sessionEnd",
            session,
            duration_ms,
            statements,
            reason,
            error,
        },
    );
}

/// A session that never started.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionRefused<'a> {
    pub time: Time,
    pub event: &'static str,
    pub session: &'a str,
    pub connection: &'a str,
    pub peer: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<&'a str>,
    pub error: ErrorNote<'a>,
}

pub fn session_refused(buf: &mut Vec<u8>, e: &SessionRefused<'_>) {
    line(buf, e);
}

/// An error as the client got it.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ErrorNote<'a> {
    pub code: &'a str,
    pub message: &'a str,
}

/// How a held statement's approval went, on its `statement` event.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalNote<'a> {
    pub request: &'a str,
    pub outcome: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<&'a str>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Statement<'a> {
    pub time: Time,
    pub event: &'static str,
    pub session: &'a str,
    pub seq: u64,
    pub protocol: &'static str,
    pub text: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text_bytes: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub params: Option<usize>,
    pub decision: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audit: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorNote<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approval: Option<ApprovalNote<'a>>,
}

/// `text` cut to at most [`MAX_TEXT`] bytes on a character boundary, and the full length when cut.
pub fn cut_text(text: &str) -> (&str, Option<usize>) {
    if text.len() <= MAX_TEXT {
        return (text, None);
    }
    let mut end = MAX_TEXT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    (&text[..end], Some(text.len()))
}

pub fn statement(buf: &mut Vec<u8>, e: &Statement<'_>) {
    line(buf, e);
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ResultEvent<'a> {
    pub time: Time,
    pub event: &'static str,
    pub session: &'a str,
    pub seq: u64,
    pub status: &'static str,
    pub duration_us: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rows: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<&'a str>,
    pub bytes: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorNote<'a>>,
}

pub fn result(buf: &mut Vec<u8>, e: &ResultEvent<'_>) {
    line(buf, e);
}

#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Approval<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time: Option<Time>,
    pub event: &'static str,
    pub session: &'a str,
    pub request: &'a str,
    pub stage: &'static str,
    pub mode: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<&'a str>,
    #[serde(skip_serializing_if = "is_false")]
    pub reused: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Time>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waited_ms: Option<u64>,
}

pub fn approval(buf: &mut Vec<u8>, e: &Approval<'_>) {
    let e = Approval {
        time: Some(e.time.unwrap_or(Time(SystemTime::now()))),
        event: "approval",
        ..*e
    };
    line(buf, &e);
}

#[derive(Debug, Serialize)]
struct Gap {
    time: Time,
    event: &'static str,
    dropped: u64,
}

pub fn gap(buf: &mut Vec<u8>, time: SystemTime, dropped: u64) {
    line(
        buf,
        &Gap {
            time: Time(time),
            event: "journalGap",
            dropped,
        },
    );
}
