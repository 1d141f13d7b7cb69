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
#[error(
    "startup parameter \"{name}\" is not allowed through dbward; set it with SET after connecting, where policy decides"
)]
pub struct StartupParamError {
    pub name: String,
}

fn allowed(name: &str) -> bool {
    ALLOWED.iter().any(|a| a.eq_ignore_ascii_case(name))
}

/// Checks a startup packet's parameters (user, database and `_pq_.` options already removed).
pub fn check_startup_params(params: &[(&str, &str)]) -> Result<(), StartupParamError> {
    for (name, value) in params {
        if name.eq_ignore_ascii_case("options") {
            for setting in option_settings(value) {
                let setting = setting?;
                if !allowed(&setting) {
                    return Err(StartupParamError { name: setting });
                }
            }
        } else if !allowed(name) {
            return Err(StartupParamError {
                name: (*name).to_owned(),
            });
        }
    }
    Ok(())
}

/// The setting names in an `options` value: `-c name=value`, `-cname=value` and `--name=value`,
/// separated by spaces (a backslash escapes the next character). Any other switch (`-d 5`, `-B`...)
/// is refused, named as it was written.
fn option_settings(value: &str) -> impl Iterator<Item = Result<String, StartupParamError>> + '_ {
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
            return Some(Err(StartupParamError {
                name: format!("options {word}"),
            }));
        };
        let name = assignment.split('=').next().unwrap_or("").replace('-', "_");
        Some(Ok(name))
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
        assert_eq!(e.name, "role");
        assert!(e.to_string().contains("SET after connecting"));
        let e = check_startup_params(&[("options", "-c session_authorization=postgres")]).unwrap_err();
        assert_eq!(e.name, "session_authorization");
        let e = check_startup_params(&[("options", "-c default_transaction_read_only=on -c role=x")])
            .unwrap_err();
        assert_eq!(e.name, "role");
        let e = check_startup_params(&[("options", "-d 5")]).unwrap_err();
        assert_eq!(e.name, "options -d");
        let e = check_startup_params(&[("options", "--session-replication-role=replica")]).unwrap_err();
        assert_eq!(e.name, "session_replication_role");
        let e = check_startup_params(&[("options", "-c\\ role=x")]).unwrap_err();
        assert_eq!(e.name, " role");
    }
}
