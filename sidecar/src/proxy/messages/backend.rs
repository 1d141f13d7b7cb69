//! Messages the server (or the sidecar, speaking as a server) sends: tags, encoders for the few the
//! sidecar writes itself, and decoders for the few it reads.

use bytes::{BufMut, BytesMut};

use super::{Malformed, Reader};

/// Message tags sent by the server (backend).
pub mod tag {
    pub const AUTHENTICATION: u8 = b'R';
    pub const BACKEND_KEY_DATA: u8 = b'K';
    pub const BIND_COMPLETE: u8 = b'2';
    pub const CLOSE_COMPLETE: u8 = b'3';
    pub const COMMAND_COMPLETE: u8 = b'C';
    pub const COPY_BOTH_RESPONSE: u8 = b'W';
    pub const COPY_DATA: u8 = b'd';
    pub const COPY_DONE: u8 = b'c';
    pub const COPY_IN_RESPONSE: u8 = b'G';
    pub const COPY_OUT_RESPONSE: u8 = b'H';
    pub const DATA_ROW: u8 = b'D';
    pub const EMPTY_QUERY_RESPONSE: u8 = b'I';
    pub const ERROR_RESPONSE: u8 = b'E';
    pub const FUNCTION_CALL_RESPONSE: u8 = b'V';
    pub const NEGOTIATE_PROTOCOL_VERSION: u8 = b'v';
    pub const NO_DATA: u8 = b'n';
    pub const NOTICE_RESPONSE: u8 = b'N';
    pub const NOTIFICATION_RESPONSE: u8 = b'A';
    pub const PARAMETER_DESCRIPTION: u8 = b't';
    pub const PARAMETER_STATUS: u8 = b'S';
    pub const PARSE_COMPLETE: u8 = b'1';
    pub const PORTAL_SUSPENDED: u8 = b's';
    pub const READY_FOR_QUERY: u8 = b'Z';
    pub const ROW_DESCRIPTION: u8 = b'T';
}

/// Authentication request codes (the first Int32 of an `R` message).
pub mod auth {
    pub const OK: i32 = 0;
    pub const KERBEROS_V5: i32 = 2;
    pub const CLEARTEXT_PASSWORD: i32 = 3;
    pub const MD5_PASSWORD: i32 = 5;
    pub const GSS: i32 = 7;
    pub const GSS_CONTINUE: i32 = 8;
    pub const SSPI: i32 = 9;
    pub const SASL: i32 = 10;
    pub const SASL_CONTINUE: i32 = 11;
    pub const SASL_FINAL: i32 = 12;
}

/// Transaction status carried by ReadyForQuery.
pub mod txn {
    pub const IDLE: u8 = b'I';
    pub const IN_BLOCK: u8 = b'T';
    pub const FAILED: u8 = b'E';
}

/// Appends a message: tag, length, then whatever `body` writes.
pub fn put_message(out: &mut BytesMut, tag: u8, body: impl FnOnce(&mut BytesMut)) {
    out.put_u8(tag);
    let len_at = out.len();
    out.put_u32(0);
    body(out);
    let len = u32::try_from(out.len() - len_at).expect("sidecar-built messages are small");
    out[len_at..len_at + 4].copy_from_slice(&len.to_be_bytes());
}

pub fn put_cstr(out: &mut BytesMut, s: &str) {
    // A NUL inside would end the string early on the other side; the sidecar never writes such text,
    // but strip it rather than emit a malformed message.
    out.extend(s.bytes().filter(|&b| b != 0));
    out.put_u8(0);
}

pub fn authentication_ok(out: &mut BytesMut) {
    put_message(out, tag::AUTHENTICATION, |b| b.put_i32(auth::OK));
}

pub fn authentication_cleartext(out: &mut BytesMut) {
    put_message(out, tag::AUTHENTICATION, |b| b.put_i32(auth::CLEARTEXT_PASSWORD));
}

pub fn backend_key_data(out: &mut BytesMut, pid: i32, secret: i32) {
    put_message(out, tag::BACKEND_KEY_DATA, |b| {
        b.put_i32(pid);
        b.put_i32(secret);
    });
}

pub fn ready_for_query(out: &mut BytesMut, status: u8) {
    put_message(out, tag::READY_FOR_QUERY, |b| b.put_u8(status));
}

pub fn parameter_status(out: &mut BytesMut, name: &str, value: &str) {
    put_message(out, tag::PARAMETER_STATUS, |b| {
        put_cstr(b, name);
        put_cstr(b, value);
    });
}

/// NegotiateProtocolVersion: the newest minor version supported and the options not recognized.
pub fn negotiate_protocol_version(out: &mut BytesMut, minor: i32, unrecognized: &[&str]) {
    put_message(out, tag::NEGOTIATE_PROTOCOL_VERSION, |b| {
        b.put_i32(minor);
        b.put_i32(i32::try_from(unrecognized.len()).unwrap_or(i32::MAX));
        for o in unrecognized {
            put_cstr(b, o);
        }
    });
}

/// An `R` message: its code and the rest of the body.
pub fn authentication(body: &[u8]) -> Result<(i32, &[u8]), Malformed> {
    let mut r = Reader::new(body, "Authentication");
    let code = r.i32()?;
    Ok((code, r.remaining()))
}

/// The mechanisms listed by AuthenticationSASL.
pub fn sasl_mechanisms(mut rest: &[u8]) -> Result<Vec<&str>, Malformed> {
    let mut r = Reader::new(rest, "AuthenticationSASL");
    let mut out = Vec::new();
    loop {
        let m = r.cstr()?;
        if m.is_empty() {
            break;
        }
        out.push(m);
    }
    rest = r.remaining();
    if !rest.is_empty() {
        return Err(Malformed {
            message: "AuthenticationSASL",
            problem: "trailing bytes",
        });
    }
    Ok(out)
}

/// BackendKeyData with a 4-byte secret (protocol 3.0, which the sidecar speaks upstream).
pub fn backend_key(body: &[u8]) -> Result<(i32, i32), Malformed> {
    let mut r = Reader::new(body, "BackendKeyData");
    let pid = r.i32()?;
    let secret = r.i32()?;
    r.finish()?;
    Ok((pid, secret))
}

/// ReadyForQuery's transaction status.
pub fn ready_status(body: &[u8]) -> Result<u8, Malformed> {
    let mut r = Reader::new(body, "ReadyForQuery");
    let s = r.u8()?;
    r.finish()?;
    match s {
        txn::IDLE | txn::IN_BLOCK | txn::FAILED => Ok(s),
        _ => Err(r.err("unknown transaction status")),
    }
}

/// ParameterStatus: name and value.
pub fn parameter(body: &[u8]) -> Result<(&str, &str), Malformed> {
    let mut r = Reader::new(body, "ParameterStatus");
    let name = r.cstr()?;
    let value = r.cstr()?;
    r.finish()?;
    Ok((name, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_exact_bytes() {
        let mut b = BytesMut::new();
        ready_for_query(&mut b, txn::IDLE);
        assert_eq!(&b[..], b"Z\0\0\0\x05I");
        b.clear();
        authentication_ok(&mut b);
        assert_eq!(&b[..], b"R\0\0\0\x08\0\0\0\0");
        b.clear();
        parameter_status(&mut b, "a", "b\0c");
        assert_eq!(&b[..], b"S\0\0\0\x09a\0bc\0");
        b.clear();
        negotiate_protocol_version(&mut b, 0, &["_pq_.x"]);
        assert_eq!(&b[..], b"v\0\0\0\x13\0\0\0\0\0\0\0\x01_pq_.x\0");
    }

    #[test]
    fn decodes_server_messages() {
        assert_eq!(ready_status(b"T").unwrap(), txn::IN_BLOCK);
        assert!(ready_status(b"Q").is_err());
        assert!(ready_status(b"").is_err());
        let mechs = sasl_mechanisms(b"SCRAM-SHA-256-PLUS\0SCRAM-SHA-256\0\0").unwrap();
        assert_eq!(mechs, vec!["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"]);
        assert!(sasl_mechanisms(b"SCRAM").is_err());
        assert_eq!(backend_key(&[0, 0, 0, 7, 0, 0, 0, 9]).unwrap(), (7, 9));
        assert_eq!(authentication(&[0, 0, 0, 10, 1]).unwrap(), (10, &[1u8][..]));
        assert_eq!(
            parameter(b"server_version\x0015.1\0").unwrap(),
            ("server_version", "15.1")
        );
    }
}
