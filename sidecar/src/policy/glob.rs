//! Globs over dotted names: `*` matches any run of characters and `?` exactly one, within one
//! dot-separated part. Matching is case-sensitive: names reach the policy engine already folded as
//! PostgreSQL folds unquoted identifiers.

/// One part of a glob (no dots).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Part(Box<str>);

impl Part {
    fn matches(&self, text: &str) -> bool {
        wildcard_match(self.0.as_bytes(), text.as_bytes())
    }
}

/// A rule's table glob: `table` (any schema) or `schema.table`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TableGlob {
    schema: Option<Part>,
    table: Part,
}

impl TableGlob {
    /// Compiles a glob that `validate()` accepted (one or two parts).
    pub(crate) fn new(glob: &str) -> Self {
        match glob.split_once('.') {
            Some((schema, table)) => Self {
                schema: Some(Part(schema.into())),
                table: Part(table.into()),
            },
            None => Self {
                schema: None,
                table: Part(glob.into()),
            },
        }
    }

    /// Whether the resolved name `schema.table` matches. The name is split at its first dot; a name
    /// without a dot has an empty schema.
    pub(crate) fn matches(&self, resolved: &str) -> bool {
        let (schema, table) = resolved.split_once('.').unwrap_or(("", resolved));
        self.schema.as_ref().is_none_or(|s| s.matches(schema)) && self.table.matches(table)
    }
}

/// A masking rule's column glob: `schema.table.column`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ColumnGlob {
    schema: Part,
    table: Part,
    column: Part,
}

impl ColumnGlob {
    /// Compiles a glob that `validate()` accepted (three parts; missing parts would match only empty
    /// names).
    pub(crate) fn new(glob: &str) -> Self {
        let mut parts = glob.splitn(3, '.');
        let mut next = || Part(parts.next().unwrap_or("").into());
        Self {
            schema: next(),
            table: next(),
            column: next(),
        }
    }

    /// Whether the column `schema.table.column` matches.
    pub(crate) fn matches(&self, schema: &str, table: &str, column: &str) -> bool {
        self.column.matches(column) && self.table.matches(table) && self.schema.matches(schema)
    }
}

/// `*` and `?` wildcard matching, iterative with one backtrack point (linear in practice, never
/// exponential). `?` matches one UTF-8 character.
fn wildcard_match(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, t));
                p += 1;
                continue;
            }
            Some(b'?') => {
                p += 1;
                t += utf8_len(text[t]);
                continue;
            }
            Some(&c) if c == text[t] => {
                p += 1;
                t += 1;
                continue;
            }
            _ => {}
        }
        match star {
            Some((sp, st)) => {
                let st = st + utf8_len(text[st]);
                star = Some((sp, st));
                p = sp + 1;
                t = st;
            }
            None => return false,
        }
    }
    pattern[p.min(pattern.len())..].iter().all(|&c| c == b'*')
}

/// Length of the UTF-8 character starting with `lead` (1 for a stray continuation byte).
fn utf8_len(lead: u8) -> usize {
    match lead {
        0xF0..=0xFF => 4,
        0xE0..=0xEF => 3,
        0xC0..=0xDF => 2,
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        let cases: &[(&str, &str, bool)] = &[
            ("orders", "orders", true),
            ("orders", "orders2", false),
            ("order?", "orders", true),
            ("order?", "order", false),
            ("*", "", true),
            ("*", "anything", true),
            ("log_*", "log_2024", true),
            ("log_*", "blog_2024", false),
            ("*_log", "audit_log", true),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "axxbyy", false),
            ("a*?c", "abc", true),
            ("?", "é", true),
            ("??", "é", false),
            ("", "", true),
            ("", "x", false),
        ];
        for (pattern, text, want) in cases {
            assert_eq!(
                wildcard_match(pattern.as_bytes(), text.as_bytes()),
                *want,
                "{pattern} vs {text}"
            );
        }
    }

    #[test]
    fn table_and_column_globs() {
        let cases: &[(&str, &str, bool)] = &[
            ("orders", "public.orders", true),
            ("orders", "sales.orders", true),
            ("orders", "orders", true),
            ("public.orders", "sales.orders", false),
            ("public.*", "public.orders", true),
            ("*.orders", "public.orders", true),
            ("public.*", "public", false),
            ("audit.log_*", "audit.log_2026", true),
        ];
        for (glob, name, want) in cases {
            assert_eq!(TableGlob::new(glob).matches(name), *want, "{glob} vs {name}");
        }
        let g = ColumnGlob::new("*.customers.e*");
        assert!(g.matches("public", "customers", "email"));
        assert!(!g.matches("public", "customers", "name"));
        assert!(!g.matches("public", "orders", "email"));
    }
}
