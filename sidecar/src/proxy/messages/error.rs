//! ErrorResponse and NoticeResponse: the sidecar's own errors and notices, and reading the server's.

use bytes::{BufMut, BytesMut};

use super::{
    Malformed, Reader,
    backend::{put_cstr, put_message, tag},
};

/// Severity of an error or notice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// Ends the statement; the session goes on.
    Error,
    /// Ends the session.
    Fatal,
    Notice,
    Warning,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "ERROR",
            Severity::Fatal => "FATAL",
            Severity::Notice => "NOTICE",
            Severity::Warning => "WARNING",
        }
    }
}

/// SQLSTATE codes the sidecar itself uses.
pub mod sqlstate {
    pub const PROTOCOL_VIOLATION: &str = "08P01";
    pub const CONNECTION_FAILURE: &str = "08006";
    pub const CANNOT_CONNECT_NOW: &str = "57P03";
    pub const ADMIN_SHUTDOWN: &str = "57P01";
    pub const INVALID_AUTHORIZATION: &str = "28000";
    pub const INVALID_PASSWORD: &str = "28P01";
    pub const INVALID_CATALOG_NAME: &str = "3D000";
    pub const FEATURE_NOT_SUPPORTED: &str = "0A000";
    pub const INSUFFICIENT_PRIVILEGE: &str = "42501";
    pub const PROGRAM_LIMIT_EXCEEDED: &str = "54000";
    pub const INTERNAL_ERROR: &str = "XX000";
    pub const IO_ERROR: &str = "58030";
    pub const OBJECT_NOT_IN_PREREQUISITE_STATE: &str = "55000";
}

/// An error or notice the sidecar sends to a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report<'a> {
    pub severity: Severity,
    pub code: &'a str,
    pub message: &'a str,
    pub detail: Option<&'a str>,
    pub hint: Option<&'a str>,
}

impl<'a> Report<'a> {
    pub fn new(severity: Severity, code: &'a str, message: &'a str) -> Self {
        Self {
            severity,
            code,
            message,
            detail: None,
            hint: None,
        }
    }

    pub fn error(code: &'a str, message: &'a str) -> Self {
        Self::new(Severity::Error, code, message)
    }

    pub fn fatal(code: &'a str, message: &'a str) -> Self {
        Self::new(Severity::Fatal, code, message)
    }

    pub fn with_detail(mut self, detail: &'a str) -> Self {
        self.detail = Some(detail);
        self
    }

    pub fn with_hint(mut self, hint: &'a str) -> Self {
        self.hint = Some(hint);
        self
    }

    /// Appends the ErrorResponse (or NoticeResponse for notice/warning severities).
    pub fn encode(&self, out: &mut BytesMut) {
        let t = match self.severity {
            Severity::Error | Severity::Fatal => tag::ERROR_RESPONSE,
            Severity::Notice | Severity::Warning => tag::NOTICE_RESPONSE,
        };
        put_message(out, t, |b| {
            for (field, value) in [(b'S', self.severity.as_str()), (b'V', self.severity.as_str())] {
                b.put_u8(field);
                put_cstr(b, value);
            }
            b.put_u8(b'C');
            put_cstr(b, self.code);
            b.put_u8(b'M');
            put_cstr(b, self.message);
            if let Some(d) = self.detail {
                b.put_u8(b'D');
                put_cstr(b, d);
            }
            if let Some(h) = self.hint {
                b.put_u8(b'H');
                put_cstr(b, h);
            }
            b.put_u8(0);
        });
    }
}

/// The fields of an ErrorResponse or NoticeResponse the server sent.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ServerReport<'a> {
    pub severity: &'a str,
    pub code: &'a str,
    pub message: &'a str,
    pub detail: Option<&'a str>,
    pub hint: Option<&'a str>,
}

pub fn parse_report(body: &[u8]) -> Result<ServerReport<'_>, Malformed> {
    let mut r = Reader::new(body, "ErrorResponse");
    let mut out = ServerReport::default();
    loop {
        let field = r.u8()?;
        if field == 0 {
            break;
        }
        let value = r.cstr()?;
        match field {
            b'V' => out.severity = value,
            b'S' if out.severity.is_empty() => out.severity = value,
            b'C' => out.code = value,
            b'M' => out.message = value,
            b'D' => out.detail = Some(value),
            b'H' => out.hint = Some(value),
            _ => {}
        }
    }
    r.finish()?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let mut b = BytesMut::new();
        Report::error(sqlstate::INSUFFICIENT_PRIVILEGE, "blocked")
            .with_hint("ask")
            .encode(&mut b);
        assert_eq!(b[0], b'E');
        let len = u32::from_be_bytes([b[1], b[2], b[3], b[4]]) as usize;
        assert_eq!(len + 1, b.len());
        let r = parse_report(&b[5..]).unwrap();
        assert_eq!(
            r,
            ServerReport {
                severity: "ERROR",
                code: "42501",
                message: "blocked",
                detail: None,
                hint: Some("ask")
            }
        );
        b.clear();
        Report::new(Severity::Notice, "00000", "n").encode(&mut b);
        assert_eq!(b[0], b'N');
    }

    #[test]
    fn rejects_truncated() {
        assert!(parse_report(b"SERROR\0CXX000").is_err());
        assert!(parse_report(b"").is_err());
    }
}
