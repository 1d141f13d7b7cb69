//! Identifier normalization as PostgreSQL does it: unquoted identifiers fold to lower case, quoted
//! ones are kept as written.

use sqlparser::ast::{Expr, Ident, ObjectName, Value};

use super::effects::RelationName;

/// One identifier, normalized.
pub(crate) fn ident(id: &Ident) -> String {
    match id.quote_style {
        None => id.value.to_lowercase(),
        Some(_) => id.value.clone(),
    }
}

/// The normalized parts of a name; `None` when a part is not a plain identifier.
fn parts(name: &ObjectName) -> Option<Vec<String>> {
    name.0.iter().map(|p| p.as_ident().map(ident)).collect()
}

/// A relation as named: `name`, `schema.name` or `catalog.schema.name` (the catalog is dropped,
/// PostgreSQL only accepts the current database there). `None` when the name has an unexpected shape.
pub(crate) fn relation(name: &ObjectName) -> Option<RelationName> {
    // sqlparser 0.63 reads `UPDATE ONLY t` as a table named ONLY aliased t: refuse that name unquoted.
    if name.0.iter().any(|p| {
        p.as_ident()
            .is_some_and(|i| i.quote_style.is_none() && i.value.eq_ignore_ascii_case("only"))
    }) {
        return None;
    }
    let parts = parts(name)?;
    match parts.as_slice() {
        [n] => Some(RelationName::new(None, n)),
        [s, n] | [_, s, n] => Some(RelationName::new(Some(s), n)),
        _ => None,
    }
}

/// A function name as written, normalized and dot-joined (`pg_catalog.pg_read_file`).
pub(crate) fn function(name: &ObjectName) -> String {
    match parts(name) {
        Some(p) => p.join("."),
        None => name.to_string().to_lowercase(),
    }
}

/// A relation named by a string literal, as `nextval('s')` or `'public.s'::regclass` take it. The
/// text is parsed as PostgreSQL's `regclass` input does: dot-separated, quoted parts kept.
pub(crate) fn relation_from_text(text: &str) -> Option<RelationName> {
    let mut out = Vec::new();
    let mut chars = text.trim().chars().peekable();
    loop {
        let mut part = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        part.push('"');
                    }
                    Some('"') => break,
                    Some(c) => part.push(c),
                    None => return None,
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == '.' {
                    break;
                }
                if !(c.is_alphanumeric() || c == '_' || c == '$') {
                    return None;
                }
                part.extend(c.to_lowercase());
                chars.next();
            }
        }
        if part.is_empty() {
            return None;
        }
        out.push(part);
        match chars.next() {
            Some('.') => continue,
            None => break,
            Some(_) => return None,
        }
    }
    match out.as_slice() {
        [n] => Some(RelationName::new(None, n)),
        [s, n] | [_, s, n] => Some(RelationName::new(Some(s), n)),
        _ => None,
    }
}

/// The text of a string literal, seen through casts (`'s'::regclass`, `'x'::text`).
pub(crate) fn literal_text(expr: &Expr) -> Option<&str> {
    match expr {
        Expr::Value(v) => match &v.value {
            Value::SingleQuotedString(s) | Value::EscapedStringLiteral(s) => Some(s),
            Value::DollarQuotedString(d) => Some(&d.value),
            _ => None,
        },
        Expr::Cast { expr, .. } | Expr::Nested(expr) => literal_text(expr),
        _ => None,
    }
}

/// Splits a `search_path` value given as one string (`'a, "B", public'`) into normalized schemas.
pub(crate) fn search_path_from_text(text: &str) -> Option<Vec<String>> {
    let mut out = Vec::new();
    for raw in text.split(',') {
        let raw = raw.trim();
        if raw.is_empty() {
            continue;
        }
        if let Some(inner) = raw.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
            out.push(inner.replace("\"\"", "\""));
        } else if raw.contains('"') {
            return None;
        } else {
            out.push(raw.to_lowercase());
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relation_text_is_parsed_like_regclass() {
        type Want = Option<(Option<&'static str>, &'static str)>;
        let cases: &[(&str, Want)] = &[
            ("s", Some((None, "s"))),
            ("Public.Seq", Some((Some("public"), "seq"))),
            ("\"My\"\"S\".x", Some((Some("My\"S"), "x"))),
            ("a b", None),
            ("", None),
            ("a.", None),
        ];
        for (text, want) in cases {
            let want = want.map(|(s, n)| RelationName::new(s, n));
            assert_eq!(relation_from_text(text), want, "{text}");
        }
    }

    #[test]
    fn search_path_text_is_split() {
        assert_eq!(
            search_path_from_text("a, \"B\" ,Public"),
            Some(vec!["a".into(), "B".into(), "public".into()])
        );
        assert_eq!(search_path_from_text("a\"b"), None);
    }
}
