//! Statement fingerprints: a stable hex SHA-256 of the normalized statement text, so that approvals
//! and caches can recognize "the same statement" whatever its spacing or keyword case.

use std::ops::ControlFlow;

use aws_lc_rs::digest;
use sqlparser::{
    ast::{Value, ValueWithSpan, VisitMut, VisitorMut},
    dialect::PostgreSqlDialect,
    tokenizer::{Token, Tokenizer, Word},
};

use super::split::split;

/// The fingerprint of `sql` with literal values replaced by placeholders: `select * from t where
/// id = 1` and `SELECT *  FROM t WHERE id=2` share it.
pub fn fingerprint(sql: &str) -> String {
    hex(&normalize(sql, true))
}

/// The fingerprint of `sql` with literal values kept: the same only for the same statement.
pub fn fingerprint_exact(sql: &str) -> String {
    hex(&normalize(sql, false))
}

/// The normalized text: each statement parsed and re-rendered (literals replaced by `?` when
/// `strip_literals`), unquoted identifiers and keywords in lower case, single spaces. Text that does
/// not parse is only whitespace-collapsed.
pub fn normalize(sql: &str, strip_literals: bool) -> String {
    let Some(pieces) = split(sql) else {
        return collapse_whitespace(sql);
    };
    let mut rendered = Vec::with_capacity(pieces.len());
    for piece in pieces {
        let Some(mut stmt) = piece.parsed else {
            return collapse_whitespace(sql);
        };
        if strip_literals {
            let _ = stmt.visit(&mut StripLiterals);
        }
        rendered.push(canonical_tokens(&stmt.to_string()));
    }
    rendered.join("; ")
}

struct StripLiterals;

impl VisitorMut for StripLiterals {
    type Break = ();

    fn pre_visit_value(&mut self, value: &mut ValueWithSpan) -> ControlFlow<()> {
        if !matches!(value.value, Value::Placeholder(_)) {
            value.value = Value::Placeholder("?".to_owned());
        }
        ControlFlow::Continue(())
    }
}

/// Re-tokenizes rendered SQL: unquoted words lower-cased, whitespace and comments collapsed.
fn canonical_tokens(text: &str) -> String {
    let dialect = PostgreSqlDialect {};
    let Ok(tokens) = Tokenizer::new(&dialect, text).tokenize() else {
        return collapse_whitespace(text);
    };
    let mut out = String::with_capacity(text.len());
    for t in tokens {
        let piece = match t {
            Token::Whitespace(_) | Token::EOF => continue,
            Token::Word(Word {
                value,
                quote_style: None,
                ..
            }) => value.to_lowercase(),
            other => other.to_string(),
        };
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(&piece);
    }
    out
}

fn collapse_whitespace(sql: &str) -> String {
    sql.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn hex(text: &str) -> String {
    let d = digest::digest(&digest::SHA256, text.as_bytes());
    crate::hex::encode(d.as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equivalent_statements_share_a_fingerprint() {
        let same: &[(&str, &str)] = &[
            ("select * from t where id = 1", "SELECT *  FROM t WHERE id=2"),
            ("select * from T", "SELECT * FROM t"),
            (
                "select a from t -- note\n where b = 'x'",
                "select a from t where b = 'y'",
            ),
            ("select 1; select 2", "SELECT 3 ;SELECT 4"),
            (
                "delete from t where id in (1, 2)",
                "DELETE FROM t WHERE id IN (3, 4)",
            ),
            ("garbage  here !!", "garbage here\n!!"),
        ];
        for (a, b) in same {
            assert_eq!(fingerprint(a), fingerprint(b), "{a} ~ {b}");
        }
    }

    #[test]
    fn different_statements_differ() {
        let differ: &[(&str, &str)] = &[
            ("select * from t", "select * from u"),
            ("select * from \"T\"", "select * from t"),
            ("delete from t", "delete from t where id = 1"),
            ("select a from t", "select b from t"),
            ("select 1", "select 1; select 1"),
        ];
        for (a, b) in differ {
            assert_ne!(fingerprint(a), fingerprint(b), "{a} vs {b}");
        }
    }

    #[test]
    fn exact_fingerprint_keeps_values() {
        let a = "select * from t where id = 1";
        assert_eq!(
            fingerprint_exact(a),
            fingerprint_exact("SELECT * FROM t  WHERE id=1")
        );
        assert_ne!(
            fingerprint_exact(a),
            fingerprint_exact("select * from t where id = 2")
        );
        assert_ne!(fingerprint_exact("select 'Ab'"), fingerprint_exact("select 'ab'"));
        assert_ne!(fingerprint(a), fingerprint_exact(a));
    }

    #[test]
    fn fingerprint_is_hex_sha256() {
        let f = fingerprint("select 1");
        assert_eq!(f.len(), 64);
        assert!(f.chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(f, fingerprint("select 1"));
    }
}
