//! Statement shapes: a statement's text with its literal values blanked out, computed by a small scan
//! that is much cheaper than a parse. Statements that differ only in their literals (`... where id =
//! 41` and `... where id = 42`) share a shape, so a decision made for one can stand for the other
//! when — and only when — the decision cannot depend on a literal's value (the guard checks that on
//! the analysis before it keys anything by shape).
//!
//! The scan is deliberately narrower than PostgreSQL's lexer: it understands plain `'...'` strings
//! (standard conforming, `''` doubling), unsigned decimal numbers, `"quoted identifiers"` and
//! comments, and gives up (`None`) on anything whose boundaries it would have to guess — escape
//! strings (`E'...'`), Unicode and bit strings, dollar quoting, nested comments, backslashes outside a
//! string, numbers with a radix prefix or digit separators. Giving up only means the statement is
//! judged by its exact text, as before.
//!
//! Soundness rests on one property: two texts with the same shape are the same sequence of tokens
//! apart from the values of string and numeric literals. Everything outside a literal is kept byte for
//! byte (comments become one space); a string literal becomes `'` and a number becomes `\0`. Neither
//! marker can appear in the kept text: every `'` outside a comment or identifier opens a literal, and
//! query text cannot contain NUL.

/// Texts longer than this are not shaped (the caller falls back to the exact text).
pub const MAX_SHAPED_TEXT: usize = 16 * 1024;

/// Writes the shape of `sql` into `out` (cleared first); false when the text is outside what the scan
/// understands (then `out` is meaningless).
pub fn shape(sql: &str, out: &mut String) -> bool {
    out.clear();
    if sql.len() > MAX_SHAPED_TEXT {
        return false;
    }
    let b = sql.as_bytes();
    let mut i = 0;
    // Where the kept run of bytes began (copied in one piece when a literal or comment interrupts it).
    let mut kept = 0;
    while i < b.len() {
        match b[i] {
            b'\'' => {
                // A prefix glued to the quote (E'', U&'', B'', X'', N'', or an identifier) changes how
                // the string is read: give up.
                if i > 0 && (is_word_byte(b[i - 1]) || b[i - 1] == b'&') {
                    return false;
                }
                let Some(end) = string_end(b, i) else {
                    return false;
                };
                out.push_str(&sql[kept..i]);
                out.push('\'');
                i = end;
                kept = i;
            }
            b'"' => {
                let Some(end) = quoted_identifier_end(b, i) else {
                    return false;
                };
                i = end;
            }
            b'-' if b.get(i + 1) == Some(&b'-') => {
                out.push_str(&sql[kept..i]);
                out.push(' ');
                i = b[i..].iter().position(|&c| c == b'\n').map_or(b.len(), |p| i + p);
                kept = i;
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let Some(end) = comment_end(b, i) else {
                    return false;
                };
                out.push_str(&sql[kept..i]);
                out.push(' ');
                i = end;
                kept = i;
            }
            b'\\' | b'\0' => return false,
            b'$' => {
                // `$1` is a parameter and `a$b` an identifier; anything else may open a dollar quote.
                let in_word = i > 0 && is_word_byte(b[i - 1]);
                if !in_word && !b.get(i + 1).is_some_and(u8::is_ascii_digit) {
                    return false;
                }
                i += 1;
                while i < b.len() && b[i].is_ascii_digit() {
                    i += 1;
                }
            }
            c if c.is_ascii_digit() && !(i > 0 && (is_word_byte(b[i - 1]) || b[i - 1] == b'$')) => {
                let Some(end) = number_end(b, i) else {
                    return false;
                };
                out.push_str(&sql[kept..i]);
                out.push('\0');
                i = end;
                kept = i;
            }
            c if is_word_byte(c) => {
                // Skip the whole word, so digits inside it (`t1`, `x2y`) stay part of it.
                while i < b.len() && (is_word_byte(b[i]) || b[i] == b'$') {
                    i += 1;
                }
            }
            _ => i += 1,
        }
    }
    out.push_str(&sql[kept..]);
    true
}

/// Letters, digits, `_` and any byte of a non-ASCII character: what identifiers and keywords are made
/// of.
fn is_word_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c >= 0x80
}

/// The index just past a plain string literal starting at `start` (`''` is a quote inside it).
fn string_end(b: &[u8], start: usize) -> Option<usize> {
    let mut i = start + 1;
    loop {
        let q = i + b[i..].iter().position(|&c| c == b'\'')?;
        if b.get(q + 1) == Some(&b'\'') {
            i = q + 2;
        } else {
            return Some(q + 1);
        }
    }
}

/// The index just past a `"quoted identifier"` starting at `start` (`""` is a quote inside it).
fn quoted_identifier_end(b: &[u8], start: usize) -> Option<usize> {
    let mut i = start + 1;
    loop {
        let q = i + b[i..].iter().position(|&c| c == b'"')?;
        if b.get(q + 1) == Some(&b'"') {
            i = q + 2;
        } else {
            return Some(q + 1);
        }
    }
}

/// The index just past a `/* ... */` comment; `None` when it is unterminated or nests (PostgreSQL
/// nests comments; not every SQL parser does).
fn comment_end(b: &[u8], start: usize) -> Option<usize> {
    let mut i = start + 2;
    while i + 1 < b.len() {
        match (b[i], b[i + 1]) {
            (b'*', b'/') => return Some(i + 2),
            (b'/', b'*') => return None,
            _ => i += 1,
        }
    }
    None
}

/// The index just past an unsigned decimal number (`12`, `1.5`, `1.`, `2e-3`); `None` when a letter,
/// `_` or `$` is glued to it (`0x1f`, `1_000`, `1abc`), whose reading differs between versions.
fn number_end(b: &[u8], start: usize) -> Option<usize> {
    let digits = |mut i: usize| {
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        i
    };
    let mut i = digits(start);
    // `1..5` is not a number followed by `..`; keep it simple and give up on a second dot.
    if b.get(i) == Some(&b'.') {
        if b.get(i + 1) == Some(&b'.') {
            return None;
        }
        i = digits(i + 1);
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        let mut j = i + 1;
        if matches!(b.get(j), Some(b'+' | b'-')) {
            j += 1;
        }
        if !b.get(j).is_some_and(u8::is_ascii_digit) {
            return None;
        }
        i = digits(j);
    }
    match b.get(i) {
        Some(&c) if is_word_byte(c) || c == b'$' || c == b'.' => None,
        _ => Some(i),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(sql: &str) -> Option<String> {
        let mut out = String::new();
        shape(sql, &mut out).then_some(out)
    }

    #[test]
    fn literals_are_blanked() {
        assert_eq!(
            sh("SELECT abalance FROM pgbench_accounts WHERE aid = 48213;").as_deref(),
            Some("SELECT abalance FROM pgbench_accounts WHERE aid = \0;")
        );
        assert_eq!(
            sh("select * from t where a = 'x''y' and b = 1.5e-3").as_deref(),
            Some("select * from t where a = ' and b = \0")
        );
        assert_eq!(sh("select 'a' 'b'").as_deref(), Some("select ' '"));
        assert_eq!(
            sh("select x::numeric(10,2)").as_deref(),
            Some("select x::numeric(\0,\0)")
        );
    }

    #[test]
    fn same_shape_only_when_only_literals_differ() {
        let a = sh("update t set v = v + -12 where id = 5").unwrap();
        let b = sh("update t set v = v + -99 where id = 123456").unwrap();
        assert_eq!(a, b);
        assert_ne!(sh("select * from t1").unwrap(), sh("select * from t2").unwrap());
        assert_ne!(
            sh("select \"a1\" from t").unwrap(),
            sh("select \"a2\" from t").unwrap()
        );
        assert_ne!(sh("select $1").unwrap(), sh("select $2").unwrap());
        // The quote inside a string never closes it early.
        assert_ne!(
            sh("select 'a'', b from secrets --'").unwrap(),
            sh("select 'a', b from secrets --'").unwrap()
        );
    }

    #[test]
    fn words_and_identifiers_keep_their_digits() {
        assert_eq!(
            sh("select c1, t2.x3 from t2").as_deref(),
            Some("select c1, t2.x3 from t2")
        );
        assert_eq!(sh("select a$1 from t").as_deref(), Some("select a$1 from t"));
        assert_eq!(
            sh("select \"it's\" from t").as_deref(),
            Some("select \"it's\" from t")
        );
    }

    #[test]
    fn comments_become_a_space() {
        assert_eq!(
            sh("select 1 -- it's\nfrom t /* don't */").as_deref(),
            Some("select \0  \nfrom t  ")
        );
    }

    #[test]
    fn gives_up_where_boundaries_would_be_guessed() {
        for sql in [
            "select E'a\\'b'",
            "select e'x'",
            "select U&'d\\0061t'",
            "select B'101'",
            "select X'1f'",
            "select N'x'",
            "select $$a$$",
            "select $tag$a$tag$",
            "select 'unterminated",
            "select \"unterminated",
            "select /* a /* nested */ */ 1",
            "select /* unterminated",
            "select 0x1f",
            "select 1_000",
            "select 1abc",
            "select 1..2",
            "select 1e",
            "select a \\ b",
        ] {
            assert_eq!(sh(sql), None, "{sql}");
        }
    }

    /// The property the guard relies on, checked against sqlparser: texts with one shape read as the
    /// same statements.
    #[test]
    fn backslashes_in_plain_strings_are_plain() {
        // With standard_conforming_strings (the only setting the guard lets a session use), a
        // backslash in '...' is an ordinary character; sqlparser must agree or the shape would hide
        // code.
        let a = crate::sql::analyze("select 'a\\', email from secrets --'");
        assert_eq!(a.statements.len(), 1);
        assert!(a.statements[0].reads.iter().any(|r| r.name == "secrets"), "{a:?}");
    }

    #[test]
    fn long_texts_are_not_shaped() {
        let sql = format!("select '{}'", "x".repeat(MAX_SHAPED_TEXT));
        assert_eq!(sh(&sql), None);
    }
}
