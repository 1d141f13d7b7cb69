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
    Ok(Parse { name, query, param_types })
}

/// Format code of a parameter or result column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Binary,
}

impl Format {
    fn from_code(code: i16, r: &Reader<'_>) -> Result<Self, Malformed> {
        match code {
            0 => Ok(Format::Text),
            1 => Ok(Format::Binary),
            _ => Err(r.err("format code must be 0 or 1")),
        }
    }
}

/// `Bind`: create a portal from a prepared statement and parameter values. Values borrow the frame.
#[derive(Debug, PartialEq, Eq)]
pub struct Bind<'a> {
    pub portal: &'a str,
    pub statement: &'a str,
    /// Per-parameter format: empty = all text, one = applies to all, else one per parameter.
    pub param_formats: Vec<Format>,
    /// Parameter values; `None` is SQL NULL.
    pub params: Vec<Option<&'a [u8]>>,
    pub result_formats: Vec<Format>,
}

impl Bind<'_> {
    /// The format of parameter `i`, following the protocol's rules for 0, 1 or N format codes.
    pub fn param_format(&self, i: usize) -> Format {
        match self.param_formats.len() {
            0 => Format::Text,
            1 => self.param_formats[0],
            _ => self.param_formats.get(i).copied().unwrap_or(Format::Text),
        }
    }

    /// Whether any result column is requested in binary.
    pub fn any_binary_result(&self) -> bool {
        self.result_formats.contains(&Format::Binary)
    }
}

pub fn bind(body: &[u8]) -> Result<Bind<'_>, Malformed> {
    let mut r = Reader::new(body, "Bind");
    let portal = r.cstr()?;
    let statement = r.cstr()?;
    let nf = r.count()?;
    let mut param_formats = Vec::with_capacity(nf.min(64));
    for _ in 0..nf {
        let c = r.i16()?;
        param_formats.push(Format::from_code(c, &r)?);
    }
    let np = r.count()?;
    if nf > 1 && nf != np {
        return Err(r.err("parameter format count does not match parameter count"));
    }
    let mut params = Vec::with_capacity(np.min(64));
    for _ in 0..np {
        let len = r.i32()?;
        if len == -1 {
            params.push(None);
        } else {
            let len = usize::try_from(len).map_err(|_| r.err("negative parameter length"))?;
            params.push(Some(r.bytes(len)?));
        }
    }
    let nr = r.count()?;
    let mut result_formats = Vec::with_capacity(nr.min(64));
    for _ in 0..nr {
        let c = r.i16()?;
        result_formats.push(Format::from_code(c, &r)?);
    }
    r.finish()?;
    Ok(Bind { portal, statement, param_formats, params, result_formats })
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
        assert_eq!(p, Parse { name: "s1", query: "select $1::int", param_types: vec![23] });
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
        assert_eq!(bind.params, vec![Some(&b"abc"[..]), None]);
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
        assert_eq!(execute(&b).unwrap(), Execute { portal: "portal", max_rows: 10 });
        assert_eq!(target(b"Sname\0", "Close").unwrap(), (Target::Statement, "name"));
        assert_eq!(target(b"P\0", "Describe").unwrap(), (Target::Portal, ""));
        assert!(target(b"Xname\0", "Close").is_err());
    }
}
