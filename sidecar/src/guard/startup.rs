//! Startup parameters under policy. A client's startup packet may carry settings (`options=-c x=y`,
//! or a setting's name as a parameter) that the server applies before the first statement — a SET no
//! policy would see. Only settings that cannot change what a statement reads, writes or who runs it
//! pass; anything else refuses the session with a message saying to SET it after connecting, where
//! policy judges it.

/// Settings a client may give at startup. Lower case; matched case-insensitively.
const ALLOWED: &[&str] = &[
    "application_name",
    "bytea_output",
    "client_encoding",
    "client_min_messages",
    "datestyle",
    "default_transaction_isolation",
    "default_transaction_read_only",
    "extra_float_digits",
    "idle_in_transaction_session_timeout",
    "idle_session_timeout",
    "intervalstyle",
    "jit",
    "lc_messages",
    "lc_monetary",
    "lc_numeric",
    "lc_time",
    "lock_timeout",
    "search_path",
    "standard_conforming_strings",
    "statement_timeout",
    "timezone",
    "geqo",
];

/// A startup parameter the guard does not let through.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StartupParamError {
    #[error(
        "startup parameter \"{name}\" is not allowed through dbward; set it with SET after connecting, where policy decides"
    )]
    Setting { name: String },
    #[error("startup parameter \"{name}\" may not be \"{value}\" through dbward: {why}")]
    Value {
        name: String,
        value: String,
        why: &'static str,
    },
}

impl StartupParamError {
    /// The parameter's name.
    pub fn name(&self) -> &str {
        match self {
            Self::Setting { name } | Self::Value { name, .. } => name,
        }
    }
}

fn allowed(name: &str) -> bool {
    ALLOWED.iter().any(|a| a.eq_ignore_ascii_case(name))
}

/// Checks a startup packet's parameters (user, database and `_pq_.` options already removed).
pub fn check_startup_params(params: &[(&str, &str)]) -> Result<(), StartupParamError> {
    for (name, value) in params {
        if name.eq_ignore_ascii_case("options") {
            for setting in option_settings(value) {
                let (name, value) = setting?;
                check_setting(&name, &value)?;
            }
        } else {
            check_setting(name, value)?;
        }
    }
    Ok(())
}

fn check_setting(name: &str, value: &str) -> Result<(), StartupParamError> {
    if !allowed(name) {
        return Err(StartupParamError::Setting {
            name: name.to_owned(),
        });
    }
    let refused = |why| {
        Err(StartupParamError::Value {
            name: name.to_owned(),
            value: value.to_owned(),
            why,
        })
    };
    let name = name.to_ascii_lowercase();
    // The sidecar reads statements as the server would only with these (see classify's setting_value).
    if name == "standard_conforming_strings" && !crate::sql::is_on_setting(value) {
        return refused("dbward reads statements with standard_conforming_strings on");
    }
    if name == "client_encoding" && !crate::sql::is_readable_encoding(value) {
        return refused("dbward reads statements as UTF-8; use UTF8 or SQL_ASCII");
    }
    Ok(())
}

/// The upstream session's startup parameters: the client's, checked, with `statement_timeout` no
/// longer than `limit` (the caller's policy limit) when there is one. The server applies named
/// parameters after `options`, so the one set here wins over any in `options`; a `RESET` or
/// `DISCARD ALL` returns to it.
pub fn upstream_params(
    params: &[(&str, &str)],
    limit: Option<std::time::Duration>,
) -> Result<Vec<(String, String)>, StartupParamError> {
    check_startup_params(params)?;
    let mut out: Vec<(String, String)> = Vec::with_capacity(params.len() + 1);
    let mut own = None;
    for (name, value) in params {
        if name.eq_ignore_ascii_case("statement_timeout") {
            own = timeout_ms(value);
            continue;
        }
        out.push(((*name).to_owned(), (*value).to_owned()));
    }
    let limit_ms = limit.map(|l| millis(l).max(1));
    let effective = match (own, limit_ms) {
        (Some(o), Some(l)) if o > 0 && o <= l => Some(o),
        (_, Some(l)) => Some(l),
        (Some(o), None) => Some(o),
        (None, None) => None,
    };
    if let Some(ms) = effective {
        out.push(("statement_timeout".to_owned(), ms.to_string()));
    }
    Ok(out)
}

/// `d` in whole milliseconds (saturating), the unit `statement_timeout` values are compared in.
pub fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A `statement_timeout` value in milliseconds, read as the server reads it: a number with an
/// optional unit (`us`, `ms`, `s`, `min`, `h`, `d`; milliseconds without one). `None` when it is not
/// such a value.
pub fn timeout_ms(value: &str) -> Option<u64> {
    let v = value.trim();
    let split = v
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(v.len());
    let (number, unit) = v.split_at(split);
    let number: f64 = number.parse().ok()?;
    let factor = match unit.trim() {
        "" | "ms" => 1.0,
        "us" => 0.001,
        "s" => 1_000.0,
        "min" => 60_000.0,
        "h" => 3_600_000.0,
        "d" => 86_400_000.0,
        _ => return None,
    };
    let ms = (number * factor).round();
    (ms.is_finite() && ms >= 0.0 && ms <= u64::MAX as f64).then_some(ms as u64)
}

/// The settings in an `options` value: `-c name=value`, `-cname=value` and `--name=value`,
/// separated by spaces (a backslash escapes the next character). Any other switch (`-d 5`, `-B`...)
/// is refused, named as it was written.
fn option_settings(value: &str) -> impl Iterator<Item = Result<(String, String), StartupParamError>> + '_ {
    let words = split_words(value);
    let mut i = 0;
    std::iter::from_fn(move || {
        let word = words.get(i)?;
        i += 1;
        let assignment = if let Some(rest) = word.strip_prefix("--") {
            rest.to_owned()
        } else if word == "-c" {
            let next = words.get(i).cloned().unwrap_or_default();
            i += 1;
            next
        } else if let Some(rest) = word.strip_prefix("-c") {
            rest.to_owned()
        } else {
            return Some(Err(StartupParamError::Setting {
                name: format!("options {word}"),
            }));
        };
        let (name, value) = assignment.split_once('=').unwrap_or((&assignment, ""));
        Some(Ok((name.replace('-', "_"), value.to_owned())))
    })
}

fn split_words(value: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut current = String::new();
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(n) = chars.next() {
                    current.push(n);
                }
            }
            c if c.is_whitespace() => {
                if !current.is_empty() {
                    words.push(std::mem::take(&mut current));
                }
            }
            c => current.push(c),
        }
    }
    if !current.is_empty() {
        words.push(current);
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_client_parameters_pass() {
        let p = [
            ("application_name", "psql"),
            ("client_encoding", "UTF8"),
            ("DateStyle", "ISO"),
            ("TimeZone", "UTC"),
            ("extra_float_digits", "3"),
        ];
        assert_eq!(check_startup_params(&p), Ok(()));
        let o = [(
            "options",
            "-c search_path=app,public --statement-timeout=5s -cTimeZone=UTC",
        )];
        assert_eq!(check_startup_params(&o), Ok(()));
    }

    #[test]
    fn settings_that_change_who_or_what_are_refused() {
        let e = check_startup_params(&[("role", "admin")]).unwrap_err();
        assert_eq!(e.name(), "role");
        assert!(e.to_string().contains("SET after connecting"));
        let e = check_startup_params(&[("options", "-c session_authorization=postgres")]).unwrap_err();
        assert_eq!(e.name(), "session_authorization");
        let e = check_startup_params(&[("options", "-c default_transaction_read_only=on -c role=x")])
            .unwrap_err();
        assert_eq!(e.name(), "role");
        let e = check_startup_params(&[("options", "-d 5")]).unwrap_err();
        assert_eq!(e.name(), "options -d");
        let e = check_startup_params(&[("options", "--session-replication-role=replica")]).unwrap_err();
        assert_eq!(e.name(), "session_replication_role");
        let e = check_startup_params(&[("options", "-c\\ role=x")]).unwrap_err();
        assert_eq!(e.name(), " role");
    }

    #[test]
    fn settings_that_change_how_statements_read_must_keep_their_safe_values() {
        assert_eq!(
            check_startup_params(&[("standard_conforming_strings", "on")]),
            Ok(())
        );
        let e = check_startup_params(&[("standard_conforming_strings", "off")]).unwrap_err();
        assert!(e.to_string().contains("standard_conforming_strings on"), "{e}");
        let e = check_startup_params(&[("options", "-c standard_conforming_strings=off")]).unwrap_err();
        assert_eq!(e.name(), "standard_conforming_strings");
        assert_eq!(check_startup_params(&[("client_encoding", "SQL_ASCII")]), Ok(()));
        assert_eq!(check_startup_params(&[("client_encoding", "utf-8")]), Ok(()));
        let e = check_startup_params(&[("client_encoding", "SJIS")]).unwrap_err();
        assert!(e.to_string().contains("UTF-8"), "{e}");
    }

    #[test]
    fn timeouts_read_like_the_server() {
        assert_eq!(timeout_ms("5000"), Some(5000));
        assert_eq!(timeout_ms("5s"), Some(5000));
        assert_eq!(timeout_ms(" 1.5 min"), Some(90_000));
        assert_eq!(timeout_ms("2h"), Some(7_200_000));
        assert_eq!(timeout_ms("0"), Some(0));
        assert_eq!(timeout_ms("1500us"), Some(2));
        assert_eq!(timeout_ms("5 weeks"), None);
        assert_eq!(timeout_ms("-1"), None);
        assert_eq!(timeout_ms(""), None);
    }

    #[test]
    fn the_upstream_timeout_is_at_most_the_limit() {
        use std::time::Duration;
        let get = |p: &[(&str, &str)], limit: Option<u64>| {
            let out = upstream_params(p, limit.map(Duration::from_millis)).unwrap();
            assert!(
                out.iter()
                    .filter(|(k, _)| k.eq_ignore_ascii_case("statement_timeout"))
                    .count()
                    <= 1
            );
            out.into_iter()
                .find(|(k, _)| k == "statement_timeout")
                .map(|(_, v)| v)
        };
        assert_eq!(get(&[("application_name", "x")], None), None);
        assert_eq!(
            get(&[("application_name", "x")], Some(30_000)).as_deref(),
            Some("30000")
        );
        assert_eq!(
            get(&[("statement_timeout", "5s")], Some(30_000)).as_deref(),
            Some("5000")
        );
        assert_eq!(
            get(&[("statement_timeout", "0")], Some(30_000)).as_deref(),
            Some("30000")
        );
        assert_eq!(
            get(&[("statement_timeout", "1h")], Some(30_000)).as_deref(),
            Some("30000")
        );
        assert_eq!(
            get(&[("Statement_Timeout", "junk")], Some(30_000)).as_deref(),
            Some("30000")
        );
        assert_eq!(
            get(&[("statement_timeout", "1h")], None).as_deref(),
            Some("3600000")
        );
        // A timeout in `options` is overridden by the named parameter, which the server applies last.
        let out = upstream_params(
            &[("options", "-c statement_timeout=0")],
            Some(Duration::from_secs(1)),
        )
        .unwrap();
        assert!(out.contains(&("statement_timeout".to_owned(), "1000".to_owned())));
    }
}
