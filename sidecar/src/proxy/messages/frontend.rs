//! Messages a client sends after startup, decoded from a frame body (the bytes after tag and length).

use super::{Malformed, Reader};

/// Message tags sent by the client (frontend).
pub mod tag {
    pub const BIND: u8 = b'B';
    pub const CLOSE: u8 = b'C';
    pub const COPY_DATA: u8 = b'd';
    pub const COPY_DONE: u8 = b'c';
    pub const COPY_FAIL: u8 = b'f';
    pub const DESCRIBE: u8 = b'D';
    pub const EXECUTE: u8 = b'E';
    pub const FLUSH: u8 = b'H';
    pub const FUNCTION_CALL: u8 = b'F';
    pub const PARSE: u8 = b'P';
    pub const PASSWORD: u8 = b'p';
    pub const QUERY: u8 = b'Q';
    pub const SYNC: u8 = b'S';
    pub const TERMINATE: u8 = b'X';
}

/// `Query`: one or more statements in the simple protocol.
pub fn query(body: &[u8]) -> Result<&str, Malformed> {
    let mut r = Reader::new(body, "Query");
    let sql = r.cstr()?;
    r.finish()?;
    Ok(sql)
}

/// `Parse`: prepare a statement.
#[derive(Debug, PartialEq, Eq)]
pub struct Parse<'a> {
    /// Statement name; empty for the unnamed statement.
    pub name: &'a str,
    /// The statement text.
    pub query: &'a str,
    /// Parameter type OIDs the client specified (0 = unspecified).
    pub param_types: Vec<u32>,
}

pub fn parse(body: &[u8]) -> Result<Parse<'_>, Malformed> {
    let mut r = Reader::new(body, "Parse");
    let name = r.cstr()?;
    let query = r.cstr()?;
    let n = r.count()?;
    let mut param_types = Vec::with_capacity(n.min(64));
    for _ in 0..n {
        param_types.push(r.u32()?);
    }
    r.finish()?;
    Ok(Parse {
        name,
        query,
        param_types,
    })
}

/// Format code of a parameter or result column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Binary,
}

/// `Bind`: create a portal from a prepared statement and parameter values. Decoding checks the whole
/// message once and keeps slices of the frame, so nothing is allocated; values are read on demand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bind<'a> {
    pub portal: &'a str,
    pub statement: &'a str,
    /// Number of parameter format codes: 0 = all text, 1 = applies to all, else one per parameter.
    format_count: usize,
    formats: &'a [u8],
    /// Number of parameter values.
    param_count: usize,
    values: &'a [u8],
    result_count: usize,
    results: &'a [u8],
}

impl<'a> Bind<'a> {
    /// The format of parameter `i`, following the protocol's rules for 0, 1 or N format codes.
    pub fn param_format(&self, i: usize) -> Format {
        let at = match self.format_count {
            0 => return Format::Text,
            1 => 0,
            _ => i,
        };
        match self.formats.get(at * 2..at * 2 + 2) {
            Some([0, 1]) => Format::Binary,
            _ => Format::Text,
        }
    }

    pub fn param_count(&self) -> usize {
        self.param_count
    }

    /// Parameter values in order; `None` is SQL NULL.
    pub fn params(&self) -> Params<'a> {
        Params {
            buf: self.values,
            left: self.param_count,
        }
    }

    /// Whether any result column is requested in binary.
    pub fn any_binary_result(&self) -> bool {
        self.results.chunks_exact(2).any(|c| c == [0, 1])
    }

    /// Number of result format codes (0 = all text, 1 = applies to all, else one per column).
    pub fn result_format_count(&self) -> usize {
        self.result_count
    }
}

/// The parameter values of a [`Bind`], already checked by [`bind`].
#[derive(Debug, Clone)]
pub struct Params<'a> {
    buf: &'a [u8],
    left: usize,
}

impl<'a> Iterator for Params<'a> {
    type Item = Option<&'a [u8]>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 || self.buf.len() < 4 {
            return None;
        }
        self.left -= 1;
        let len = i32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]);
        self.buf = &self.buf[4..];
        if len < 0 {
            return Some(None);
        }
        let len = (len as usize).min(self.buf.len());
        let (v, rest) = self.buf.split_at(len);
        self.buf = rest;
        Some(Some(v))
    }
}

fn formats<'a>(r: &mut Reader<'a>) -> Result<(usize, &'a [u8]), Malformed> {
    let n = r.count()?;
    let raw = r.bytes(n * 2)?;
    if raw.chunks_exact(2).any(|c| c != [0, 0] && c != [0, 1]) {
        return Err(r.err("format code must be 0 or 1"));
    }
    Ok((n, raw))
}

pub fn bind(body: &[u8]) -> Result<Bind<'_>, Malformed> {
    let mut r = Reader::new(body, "Bind");
    let portal = r.cstr()?;
    let statement = r.cstr()?;
    let (format_count, formats_raw) = formats(&mut r)?;
    let param_count = r.count()?;
    if format_count > 1 && format_count != param_count {
        return Err(r.err("parameter format count does not match parameter count"));
    }
    let values_start = r.remaining();
    for _ in 0..param_count {
        let len = r.i32()?;
        if len != -1 {
            let len = usize::try_from(len).map_err(|_| r.err("negative parameter length"))?;
            r.bytes(len)?;
        }
    }
    let values = &values_start[..values_start.len() - r.remaining().len()];
    let (result_count, results) = formats(&mut r)?;
    r.finish()?;
    Ok(Bind {
        portal,
        statement,
        format_count,
        formats: formats_raw,
        param_count,
        values,
        result_count,
        results,
    })
}

/// `Execute`: run a portal.
#[derive(Debug, PartialEq, Eq)]
pub struct Execute<'a> {
    pub portal: &'a str,
    /// Maximum rows to return; 0 = no limit.
    pub max_rows: i32,
}

pub fn execute(body: &[u8]) -> Result<Execute<'_>, Malformed> {
    let mut r = Reader::new(body, "Execute");
    let portal = r.cstr()?;
    let max_rows = r.i32()?;
    r.finish()?;
    Ok(Execute { portal, max_rows })
}

/// What a `Close` or `Describe` targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Statement,
    Portal,
}

/// `Close` and `Describe` share a shape: a target kind and a name.
pub fn target<'a>(body: &'a [u8], message: &'static str) -> Result<(Target, &'a str), Malformed> {
    let mut r = Reader::new(body, message);
    let kind = match r.u8()? {
        b'S' => Target::Statement,
        b'P' => Target::Portal,
        _ => return Err(r.err("target must be 'S' or 'P'")),
    };
    let name = r.cstr()?;
    r.finish()?;
    Ok((kind, name))
}

/// `PasswordMessage` in answer to AuthenticationCleartextPassword: the password (for dbward, a token).
pub fn password(body: &[u8]) -> Result<&str, Malformed> {
    let mut r = Reader::new(body, "PasswordMessage");
    let p = r.cstr()?;
    r.finish()?;
    Ok(p)
}

/// `FunctionCall`: the function's OID (arguments are not inspected).
pub fn function_call_oid(body: &[u8]) -> Result<u32, Malformed> {
    Reader::new(body, "FunctionCall").u32()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cs(s: &str) -> Vec<u8> {
        let mut v = s.as_bytes().to_vec();
        v.push(0);
        v
    }

    #[test]
    fn query_decodes_and_rejects_missing_terminator() {
        assert_eq!(query(b"select 1\0").unwrap(), "select 1");
        assert!(query(b"select 1").is_err());
        assert!(query(b"select 1\0x").is_err());
        assert!(query(b"\xff\0").is_err());
    }

    #[test]
    fn parse_with_param_types() {
        let mut b = cs("s1");
        b.extend(cs("select $1::int"));
        b.extend(1i16.to_be_bytes());
        b.extend(23u32.to_be_bytes());
        let p = parse(&b).unwrap();
        assert_eq!(
            p,
            Parse {
                name: "s1",
                query: "select $1::int",
                param_types: vec![23]
            }
        );
        b.pop();
        assert!(parse(&b).is_err());
    }

    #[test]
    fn bind_with_null_and_binary_params() {
        let mut b = cs("p");
        b.extend(cs("s"));
        b.extend(2i16.to_be_bytes());
        b.extend(0i16.to_be_bytes());
        b.extend(1i16.to_be_bytes());
        b.extend(2i16.to_be_bytes());
        b.extend(3i32.to_be_bytes());
        b.extend(b"abc");
        b.extend((-1i32).to_be_bytes());
        b.extend(1i16.to_be_bytes());
        b.extend(1i16.to_be_bytes());
        let bind = bind(&b).unwrap();
        assert_eq!(bind.portal, "p");
        assert_eq!(bind.statement, "s");
        assert_eq!(bind.params().collect::<Vec<_>>(), vec![Some(&b"abc"[..]), None]);
        assert_eq!(bind.param_count(), 2);
        assert_eq!(bind.param_format(0), Format::Text);
        assert_eq!(bind.param_format(1), Format::Binary);
        assert!(bind.any_binary_result());
    }

    #[test]
    fn bind_rejects_lies() {
        // Format count 2 but 1 parameter.
        let mut b = cs("");
        b.extend(cs(""));
        b.extend(2i16.to_be_bytes());
        b.extend([0, 0, 0, 0]);
        b.extend(1i16.to_be_bytes());
        b.extend(0i32.to_be_bytes());
        b.extend(0i16.to_be_bytes());
        assert!(bind(&b).is_err());

        // Parameter length beyond the frame.
        let mut b = cs("");
        b.extend(cs(""));
        b.extend(0i16.to_be_bytes());
        b.extend(1i16.to_be_bytes());
        b.extend(1000i32.to_be_bytes());
        b.extend(b"short");
        assert!(bind(&b).is_err());

        // Negative length other than -1, negative counts, bad format codes.
        let mut b = cs("");
        b.extend(cs(""));
        b.extend(0i16.to_be_bytes());
        b.extend(1i16.to_be_bytes());
        b.extend((-2i32).to_be_bytes());
        assert!(bind(&b).is_err());
        let mut b = cs("");
        b.extend(cs(""));
        b.extend((-1i16).to_be_bytes());
        assert!(bind(&b).is_err());
        let mut b = cs("");
        b.extend(cs(""));
        b.extend(1i16.to_be_bytes());
        b.extend(7i16.to_be_bytes());
        assert!(bind(&b).is_err());
    }

    #[test]
    fn execute_close_describe() {
        let mut b = cs("portal");
        b.extend(10i32.to_be_bytes());
        assert_eq!(
            execute(&b).unwrap(),
            Execute {
                portal: "portal",
                max_rows: 10
            }
        );
        assert_eq!(target(b"Sname\0", "Close").unwrap(), (Target::Statement, "name"));
        assert_eq!(target(b"P\0", "Describe").unwrap(), (Target::Portal, ""));
        assert!(target(b"Xname\0", "Close").is_err());
    }
}
