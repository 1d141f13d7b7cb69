//! Whether the API server runs native sidecars, from the version it reports.

/// Whether an API server reporting `major`/`minor` (the `/version` endpoint's fields, e.g. `"1"` and
/// `"29+"`) runs native sidecars: init containers with `restartPolicy: Always`, on by default since 1.29.
///
/// Managed distributions append a `+` or other text to the minor version, so only its leading digits
/// count. Anything unreadable answers `false`: a classic sidecar works everywhere, while a native one sent
/// to an older server is rejected or, worse, run as an init container that never finishes.
pub fn supports_native_sidecars(major: &str, minor: &str) -> bool {
    match (leading_number(major), leading_number(minor)) {
        (Some(major), _) if major > 1 => true,
        (Some(1), Some(minor)) => minor >= 29,
        _ => false,
    }
}

/// The number a version field starts with: `"29+"` is 29, `"x"` and `""` are none.
fn leading_number(field: &str) -> Option<u64> {
    let field = field.trim();
    let end = field.find(|c: char| !c.is_ascii_digit()).unwrap_or(field.len());
    field.get(..end)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn native_sidecars_from_1_29() {
        for (major, minor, want) in [
            ("1", "28", false),
            ("1", "28+", false),
            ("1", "29", true),
            ("1", "29+", true),
            ("1", "30+", true),
            ("1", "33", true),
            ("1", "100", true),
            (" 1 ", " 31 ", true),
            ("1", "9", false),
            ("1", "", false),
            ("1", "+", false),
            ("1", "twenty-nine", false),
            ("", "29", false),
            ("one", "29", false),
            ("0", "99", false),
            ("2", "0", true),
            ("2", "", true),
            ("garbage", "garbage", false),
            ("1", "99999999999999999999999", false),
            ("-1", "29", false),
        ] {
            assert_eq!(
                supports_native_sidecars(major, minor),
                want,
                "{major:?}.{minor:?}"
            );
        }
    }
}
