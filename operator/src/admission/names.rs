//! Reading the `dbward.dev/inject` annotation: which DatabaseConnections a pod asks for.

use super::inject::Refusal;

/// The connection names in an annotation value such as `"orders, analytics"`: trimmed, in the order
/// written, each once. Refused when the value or one of its entries is empty, or an entry cannot be the
/// name of a DatabaseConnection — better a clear message now than a pod whose sidecar cannot start.
pub(crate) fn parse_inject_annotation(value: &str) -> Result<Vec<String>, Refusal> {
    if value.trim().is_empty() {
        return Err(Refusal::EmptyAnnotation);
    }
    let mut names: Vec<String> = Vec::new();
    for entry in value.split(',') {
        let name = entry.trim();
        if name.is_empty() {
            return Err(Refusal::EmptyName {
                value: value.to_owned(),
            });
        }
        if !is_dns_subdomain(name) {
            return Err(Refusal::InvalidName {
                name: name.to_owned(),
            });
        }
        if !names.iter().any(|n| n == name) {
            names.push(name.to_owned());
        }
    }
    Ok(names)
}

/// A Kubernetes object name (DNS-1123 subdomain): at most 253 characters, dot-separated labels of
/// lower-case letters, digits and `-`, each starting and ending with a letter or digit.
pub(crate) fn is_dns_subdomain(name: &str) -> bool {
    name.len() <= 253 && name.split('.').all(is_dns_label)
}

/// A DNS-1123 label: 1 to 63 lower-case letters, digits and `-`, starting and ending with a letter or
/// digit.
fn is_dns_label(label: &str) -> bool {
    let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = label.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(first), Some(last)) => {
            bytes.len() <= 63 && alnum(first) && alnum(last) && bytes.iter().all(|b| alnum(b) || *b == b'-')
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn names_are_trimmed_and_deduplicated_in_order() {
        assert_eq!(parse_inject_annotation("orders").unwrap(), ["orders"]);
        assert_eq!(
            parse_inject_annotation(" orders , analytics,orders,db.prod ").unwrap(),
            ["orders", "analytics", "db.prod"]
        );
    }

    #[test]
    fn empty_values_and_entries_are_refused() {
        for value in ["", "   ", "\t\n"] {
            assert_eq!(
                parse_inject_annotation(value),
                Err(Refusal::EmptyAnnotation),
                "{value:?}"
            );
        }
        for value in ["orders,,x", "orders,", ",orders", "orders, ,x"] {
            assert_eq!(
                parse_inject_annotation(value),
                Err(Refusal::EmptyName {
                    value: value.to_owned()
                }),
                "{value:?}"
            );
        }
    }

    #[test]
    fn names_that_cannot_be_object_names_are_refused() {
        let long_label = "a".repeat(64);
        let long_name = ["a"; 128].join(".");
        for bad in [
            "Orders",
            "orders db",
            "-orders",
            "orders-",
            "orders_db",
            ".orders",
            "orders.",
            "a..b",
            "orders/x",
            "ördërs",
            long_label.as_str(),
            long_name.as_str(),
        ] {
            let value = format!("ok,{bad}");
            assert_eq!(
                parse_inject_annotation(&value),
                Err(Refusal::InvalidName {
                    name: bad.trim().to_owned()
                }),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn valid_names() {
        let max_label = "a".repeat(63);
        let max_name = ["a"; 127].join(".");
        assert_eq!(max_name.len(), 253);
        for good in [
            "a",
            "0",
            "orders-2",
            "db.prod.eu",
            max_label.as_str(),
            max_name.as_str(),
        ] {
            assert!(is_dns_subdomain(good), "{good:?}");
        }
    }
}
