//! Decoding and encoding single fields of COPY text and CSV data, as the server writes them.

use bytes::{BufMut, BytesMut};

/// Decode a text-format field (backslash escapes) into `out`.
pub(crate) fn decode_text(raw: &[u8], out: &mut BytesMut) {
    out.reserve(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        i += 1;
        if b != b'\\' || i == raw.len() {
            out.put_u8(b);
            continue;
        }
        let c = raw[i];
        i += 1;
        match c {
            b'b' => out.put_u8(0x08),
            b'f' => out.put_u8(0x0c),
            b'n' => out.put_u8(b'\n'),
            b'r' => out.put_u8(b'\r'),
            b't' => out.put_u8(b'\t'),
            b'v' => out.put_u8(0x0b),
            b'0'..=b'7' => {
                let mut v = u32::from(c - b'0');
                for _ in 0..2 {
                    match raw.get(i) {
                        Some(&d @ b'0'..=b'7') => {
                            v = v * 8 + u32::from(d - b'0');
                            i += 1;
                        }
                        _ => break,
                    }
                }
                out.put_u8((v & 0xff) as u8);
            }
            b'x' if raw.get(i).is_some_and(u8::is_ascii_hexdigit) => {
                let mut v = 0u32;
                for _ in 0..2 {
                    match raw.get(i).and_then(|d| (*d as char).to_digit(16)) {
                        Some(d) => {
                            v = v * 16 + d;
                            i += 1;
                        }
                        None => break,
                    }
                }
                out.put_u8((v & 0xff) as u8);
            }
            other => out.put_u8(other),
        }
    }
}

/// Encode a value as a text-format field, escaping as the server does.
pub(crate) fn encode_text(value: &[u8], delimiter: u8, out: &mut BytesMut) {
    out.reserve(value.len());
    for &b in value {
        let escaped = match b {
            b'\\' => b'\\',
            0x08 => b'b',
            0x0c => b'f',
            b'\n' => b'n',
            b'\r' => b'r',
            b'\t' => b't',
            0x0b => b'v',
            _ if b == delimiter => delimiter,
            _ => {
                out.put_u8(b);
                continue;
            }
        };
        out.put_u8(b'\\');
        out.put_u8(escaped);
    }
}

/// The end of the text-format field starting at `start` (at the delimiter, or the row's end).
pub(crate) fn text_field_end(row: &[u8], start: usize, delimiter: u8) -> usize {
    let mut i = start;
    while i < row.len() {
        match row[i] {
            b'\\' => i += 2,
            b if b == delimiter => return i,
            _ => i += 1,
        }
    }
    row.len()
}

/// The CSV settings of a COPY.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Csv<'a> {
    pub delimiter: u8,
    pub quote: u8,
    pub escape: u8,
    pub null: &'a [u8],
}

/// The end of the CSV field starting at `start` (at the delimiter, or the row's end), and whether any
/// part of it was quoted.
pub(crate) fn csv_field_end(row: &[u8], start: usize, csv: &Csv<'_>) -> (usize, bool) {
    let mut i = start;
    let mut in_quotes = false;
    let mut quoted = false;
    while i < row.len() {
        let b = row[i];
        if in_quotes {
            if b == csv.escape && row.get(i + 1).is_some_and(|&n| n == csv.quote || n == csv.escape) {
                // An escaped quote (or escape) inside quotes, including the doubled quote.
                if csv.escape != csv.quote || row.get(i + 1) == Some(&csv.quote) {
                    i += 2;
                    continue;
                }
            }
            if b == csv.quote {
                in_quotes = false;
            }
        } else if b == csv.quote {
            in_quotes = true;
            quoted = true;
        } else if b == csv.delimiter {
            return (i, quoted);
        }
        i += 1;
    }
    (row.len(), quoted)
}

/// Decode a CSV field (quotes and escapes removed) into `out`.
pub(crate) fn decode_csv(raw: &[u8], csv: &Csv<'_>, out: &mut BytesMut) {
    out.reserve(raw.len());
    let mut i = 0;
    let mut in_quotes = false;
    while i < raw.len() {
        let b = raw[i];
        if in_quotes {
            if b == csv.escape
                && let Some(&n) = raw.get(i + 1)
                && (n == csv.quote || n == csv.escape)
                && (csv.escape != csv.quote || n == csv.quote)
            {
                out.put_u8(n);
                i += 2;
                continue;
            }
            if b == csv.quote {
                in_quotes = false;
            } else {
                out.put_u8(b);
            }
        } else if b == csv.quote {
            in_quotes = true;
        } else {
            out.put_u8(b);
        }
        i += 1;
    }
}

/// Encode a value as a CSV field: quoted when it contains the delimiter, quote, escape, CR or LF, when it
/// equals the null string, or when it is empty (an empty unquoted field would read as NULL with the
/// default null string).
pub(crate) fn encode_csv(value: &[u8], csv: &Csv<'_>, out: &mut BytesMut) {
    let needs_quotes = value.is_empty()
        || value == csv.null
        || value
            .iter()
            .any(|&b| b == csv.delimiter || b == csv.quote || b == csv.escape || b == b'\n' || b == b'\r')
        || value.starts_with(b"\\.");
    if !needs_quotes {
        out.extend_from_slice(value);
        return;
    }
    out.reserve(value.len() + 2);
    out.put_u8(csv.quote);
    for &b in value {
        if b == csv.quote || b == csv.escape {
            out.put_u8(csv.escape);
        }
        out.put_u8(b);
    }
    out.put_u8(csv.quote);
}
