//! Field-level validation shared by the three specs: the error type and the checks they have in common.
//!
//! Each spec has a `validate()` returning every problem at once, each naming the field in the same
//! notation `kubectl explain` and the API server use (`spec.rules[2].tables[0]`).

use std::{fmt, net::IpAddr, time::Duration};

use serde::{Deserialize, Serialize};

use crate::{duration::parse_duration, timestamp::parse_rfc3339};

/// One problem with one field of a spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "kube", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct FieldError {
    /// The offending field, as a path from the object's root, e.g. `spec.rules[2].tables[0]`.
    pub field: String,
    /// What is wrong with it and how to fix it.
    pub message: String,
}

impl FieldError {
    /// An error about `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl std::error::Error for FieldError {}

/// Collects the errors of one `validate()` run.
#[derive(Debug, Default)]
pub(crate) struct Errors(Vec<FieldError>);

impl Errors {
    pub(crate) fn push(&mut self, field: impl fmt::Display, message: impl Into<String>) {
        self.0.push(FieldError::new(field.to_string(), message));
    }

    pub(crate) fn finish(self) -> Result<(), Vec<FieldError>> {
        if self.0.is_empty() { Ok(()) } else { Err(self.0) }
    }

    /// A string that must not be empty or only spaces.
    pub(crate) fn non_empty(&mut self, field: impl fmt::Display, value: &str) -> bool {
        if value.trim().is_empty() {
            self.push(field, "must not be empty");
            return false;
        }
        true
    }

    /// A list of at most `max` entries.
    pub(crate) fn at_most(&mut self, field: impl fmt::Display, len: usize, max: u32) {
        if len > max as usize {
            self.push(
                field,
                format!("has {len} entries; at most {max} are allowed: split it into several objects"),
            );
        }
    }

    /// A Kubernetes object name (DNS-1123 subdomain): lower-case letters, digits, `-` and `.`.
    pub(crate) fn object_name(&mut self, field: impl fmt::Display, value: &str) {
        if !self.non_empty(&field, value) {
            return;
        }
        let ok = value.len() <= 253
            && value.split('.').all(|label| is_dns_label(label, 63))
            && !value.starts_with('.')
            && !value.ends_with('.');
        if !ok {
            self.push(
                field,
                format!(
                    "{value:?} is not a valid object name: use lower-case letters, digits, '-' and '.', \
                     starting and ending with a letter or digit (at most 253 characters)"
                ),
            );
        }
    }

    /// A Kubernetes namespace name (DNS-1123 label).
    pub(crate) fn namespace(&mut self, field: impl fmt::Display, value: &str) {
        if self.non_empty(&field, value) && !is_dns_label(value, 63) {
            self.push(
                field,
                format!(
                    "{value:?} is not a valid namespace name: use lower-case letters, digits and '-', \
                     starting and ending with a letter or digit (at most 63 characters)"
                ),
            );
        }
    }

    /// A key of a Secret's `data`: letters, digits, `-`, `_` and `.`.
    pub(crate) fn secret_key(&mut self, field: impl fmt::Display, value: &str) {
        if !self.non_empty(&field, value) {
            return;
        }
        let ok = value.len() <= 253
            && value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !ok {
            self.push(
                field,
                format!("{value:?} is not a valid Secret key: use letters, digits, '-', '_' and '.'"),
            );
        }
    }

    /// An absolute `https://` URL with a host, no query and no fragment (OIDC issuers, JWKS endpoints).
    /// A JWKS location: https URL, http to a loopback host, `file:///abs`, or a file path.
    pub(crate) fn jwks_uri(&mut self, field: impl fmt::Display, value: &str) {
        if !self.non_empty(&field, value) {
            return;
        }
        if value.starts_with("https://") {
            self.https_url(field, value);
        } else if let Some(rest) = value.strip_prefix("http://") {
            let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
            let host = host.rsplit_once(':').map_or(host, |(h, _)| h);
            if !matches!(host, "localhost" | "127.0.0.1" | "[::1]") {
                self.push(
                    field,
                    format!("{value:?} must use https (plain http only to localhost)"),
                );
            }
        } else if let Some(path) = value.strip_prefix("file://") {
            if !path.starts_with('/') {
                self.push(field, format!("{value:?} must be file:///absolute/path"));
            }
        } else if value.contains("://") {
            self.push(field, format!("{value:?} must be an https URL or a file path"));
        } else if value.chars().any(char::is_control) {
            self.push(field, format!("{value:?} must not contain control characters"));
        }
    }

    pub(crate) fn https_url(&mut self, field: impl fmt::Display, value: &str) {
        if !self.non_empty(&field, value) {
            return;
        }
        let problem = match value.strip_prefix("https://") {
            None if value.starts_with("http://") => {
                Some("must use https: tokens and keys are not trusted over plain http")
            }
            None => Some("must be an absolute URL starting with https://"),
            Some(rest) => {
                let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
                if host.is_empty() || host.starts_with(':') {
                    Some("has no host: write e.g. https://issuer.example.com")
                } else if value.contains(['?', '#']) {
                    Some("must not have a query or fragment")
                } else if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
                    Some("must not contain spaces")
                } else {
                    None
                }
            }
        };
        if let Some(problem) = problem {
            self.push(field, format!("{value:?} {problem}"));
        }
    }

    /// A host name or IP address, not a URL and without a port.
    pub(crate) fn host(&mut self, field: impl fmt::Display, value: &str) {
        if !self.non_empty(&field, value) {
            return;
        }
        let bare = value
            .strip_prefix('[')
            .and_then(|v| v.strip_suffix(']'))
            .unwrap_or(value);
        if bare.parse::<IpAddr>().is_ok() {
            return;
        }
        let problem = if value.contains("://") {
            Some("is a URL: write only the host name, e.g. \"db.example.com\"")
        } else if value.contains(':') {
            Some("contains ':': put the port in spec.port, not in the host")
        } else if value.len() > 253
            || !value.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
            })
        {
            Some("is not a valid host name or IP address")
        } else {
            None
        };
        if let Some(problem) = problem {
            self.push(field, format!("{value:?} {problem}"));
        }
    }

    /// A duration in the API notation, optionally refusing zero. Returns the parsed value when valid.
    pub(crate) fn duration(
        &mut self,
        field: impl fmt::Display,
        value: &str,
        allow_zero: bool,
    ) -> Option<Duration> {
        match parse_duration(value) {
            Ok(d) if d.is_zero() && !allow_zero => {
                self.push(field, "must be longer than zero");
                None
            }
            Ok(d) => Some(d),
            Err(e) => {
                self.push(field, e.to_string());
                None
            }
        }
    }

    /// An RFC 3339 timestamp. Returns the parsed value when valid.
    pub(crate) fn timestamp(
        &mut self,
        field: impl fmt::Display,
        value: &str,
    ) -> Option<std::time::SystemTime> {
        match parse_rfc3339(value) {
            Ok(t) => Some(t),
            Err(e) => {
                self.push(field, e.to_string());
                None
            }
        }
    }

    /// A dotted name glob (`public.orders`, `*.audit_*`, `public.cards.number`) with `parts` accepted
    /// part counts; `shape` is how the message describes the expected form.
    pub(crate) fn glob(&mut self, field: impl fmt::Display, value: &str, parts: &[usize], shape: &str) {
        if !self.non_empty(&field, value) {
            return;
        }
        let split: Vec<&str> = value.split('.').collect();
        let problem = if value
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '"')
        {
            Some("must not contain spaces or quotes".to_owned())
        } else if !parts.contains(&split.len()) || split.iter().any(|p| p.is_empty()) {
            Some(format!("must be {shape}"))
        } else {
            None
        };
        if let Some(problem) = problem {
            self.push(field, format!("{value:?} {problem}"));
        }
    }

    /// Names in a list that must be unique: reports every repeat at its own index.
    pub(crate) fn unique<'a>(
        &mut self,
        field: impl Fn(usize) -> String,
        values: impl IntoIterator<Item = &'a str>,
        what: &str,
    ) {
        let mut seen = std::collections::BTreeMap::new();
        for (i, value) in values.into_iter().enumerate() {
            if let Some(first) = seen.insert(value, i) {
                seen.insert(value, first);
                self.push(
                    field(i),
                    format!("duplicate {what} {value:?} (first at index {first})"),
                );
            }
        }
    }
}

fn is_dns_label(label: &str, max: usize) -> bool {
    let b = label.as_bytes();
    !b.is_empty()
        && b.len() <= max
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn run(f: impl FnOnce(&mut Errors)) -> Vec<String> {
        let mut e = Errors::default();
        f(&mut e);
        e.0.into_iter().map(|e| e.to_string()).collect()
    }

    #[test]
    fn field_error_displays_path_first() {
        let e = FieldError::new("spec.rules[2].tables[0]", "must not be empty");
        assert_eq!(e.to_string(), "spec.rules[2].tables[0]: must not be empty");
        let _: &dyn std::error::Error = &e;
    }

    #[test]
    fn object_names() {
        for ok in ["orders", "orders-db", "a.b-c", "a1"] {
            assert!(run(|e| e.object_name("f", ok)).is_empty(), "{ok}");
        }
        for bad in ["", "Orders", "-x", "x-", "a..b", ".a", "a_b", &"a".repeat(254)] {
            assert_eq!(run(|e| e.object_name("f", bad)).len(), 1, "{bad}");
        }
        assert_eq!(run(|e| e.namespace("f", "a.b")).len(), 1);
    }

    #[test]
    fn urls() {
        assert!(run(|e| e.https_url("f", "https://issuer.example.com/realms/x")).is_empty());
        let cases = [
            ("http://issuer", "must use https"),
            ("issuer.example.com", "must be an absolute URL"),
            ("https://", "has no host"),
            ("https://:443/x", "has no host"),
            ("https://a/x?y=1", "query or fragment"),
            ("https://a b", "spaces"),
        ];
        for (url, want) in cases {
            let got = run(|e| e.https_url("f", url));
            assert!(got.len() == 1 && got[0].contains(want), "{url}: {got:?}");
        }
    }

    #[test]
    fn hosts() {
        for ok in [
            "db",
            "db.example.com",
            "10.0.0.1",
            "::1",
            "[fd00::1]",
            "pg_primary.svc",
        ] {
            assert!(run(|e| e.host("f", ok)).is_empty(), "{ok}");
        }
        for (bad, want) in [
            ("postgres://db", "is a URL"),
            ("db:5432", "put the port in spec.port"),
            ("db..x", "not a valid host"),
            ("d b", "not a valid host"),
        ] {
            let got = run(|e| e.host("f", bad));
            assert!(got.len() == 1 && got[0].contains(want), "{bad}: {got:?}");
        }
    }

    #[test]
    fn globs_and_uniqueness() {
        let shape = "schema.table.column";
        assert!(run(|e| e.glob("f", "public.*.email", &[3], shape)).is_empty());
        assert_eq!(run(|e| e.glob("f", "orders.email", &[3], shape)).len(), 1);
        assert_eq!(run(|e| e.glob("f", "a..b", &[3], shape)).len(), 1);
        assert_eq!(run(|e| e.glob("f", "a.\"b\".c", &[3], shape)).len(), 1);
        let got = run(|e| e.unique(|i| format!("l[{i}]"), ["a", "b", "a", "a"], "name"));
        assert_eq!(
            got,
            [
                "l[2]: duplicate name \"a\" (first at index 0)",
                "l[3]: duplicate name \"a\" (first at index 0)"
            ]
        );
    }
}
