//! The untagged packets that open a connection: SSLRequest, GSSENCRequest, CancelRequest and the
//! StartupMessage. Each is `Int32 length` then `Int32 code` then a body.

use bytes::{BufMut, BytesMut};

use super::{Malformed, Reader, backend::put_cstr};

pub const SSL_REQUEST: i32 = 80_877_103;
pub const GSSENC_REQUEST: i32 = 80_877_104;
pub const CANCEL_REQUEST: i32 = 80_877_102;
/// Protocol 3.0, the version the sidecar speaks on both legs.
pub const PROTOCOL_3_0: i32 = 196_608;
/// PostgreSQL refuses startup packets above this size; so does the sidecar.
pub const MAX_STARTUP_PACKET: usize = 10_000;

/// A decoded opening packet.
#[derive(Debug, PartialEq, Eq)]
pub enum Opening<'a> {
    SslRequest,
    GssEncRequest,
    Cancel { pid: i32, secret: i32 },
    Startup(Startup<'a>),
}

/// A StartupMessage.
#[derive(Debug, PartialEq, Eq)]
pub struct Startup<'a> {
    /// Requested protocol minor version (major is always 3).
    pub minor: u16,
    /// Parameters in the order sent, e.g. `user`, `database`, `application_name`, `options`.
    pub params: Vec<(&'a str, &'a str)>,
}

impl<'a> Startup<'a> {
    pub fn get(&self, name: &str) -> Option<&'a str> {
        self.params.iter().find(|(k, _)| *k == name).map(|(_, v)| *v)
    }

    /// Protocol options (`_pq_.*`) the client asked for; the sidecar supports none.
    pub fn protocol_options(&self) -> Vec<&'a str> {
        self.params
            .iter()
            .filter(|(k, _)| k.starts_with("_pq_."))
            .map(|(k, _)| *k)
            .collect()
    }
}

/// Decodes the packet after its length word. `packet` starts with the code.
pub fn parse_opening(packet: &[u8]) -> Result<Opening<'_>, Malformed> {
    let mut r = Reader::new(packet, "StartupMessage");
    let code = r.i32()?;
    match code {
        SSL_REQUEST => {
            r.finish()?;
            Ok(Opening::SslRequest)
        }
        GSSENC_REQUEST => {
            r.finish()?;
            Ok(Opening::GssEncRequest)
        }
        CANCEL_REQUEST => {
            let mut r = Reader::new(r.remaining(), "CancelRequest");
            let pid = r.i32()?;
            let secret = r.i32()?;
            r.finish()?;
            Ok(Opening::Cancel { pid, secret })
        }
        _ if code >> 16 == 3 => {
            let minor = (code & 0xffff) as u16;
            let mut params = Vec::new();
            loop {
                let name = r.cstr()?;
                if name.is_empty() {
                    break;
                }
                let value = r.cstr()?;
                params.push((name, value));
            }
            r.finish()?;
            Ok(Opening::Startup(Startup { minor, params }))
        }
        _ => Err(Malformed {
            message: "StartupMessage",
            problem: "unsupported protocol version",
        }),
    }
}

fn put_packet(out: &mut BytesMut, body: impl FnOnce(&mut BytesMut)) {
    let at = out.len();
    out.put_u32(0);
    body(out);
    let len = u32::try_from(out.len() - at).expect("sidecar-built packets are small");
    out[at..at + 4].copy_from_slice(&len.to_be_bytes());
}

pub fn encode_startup(out: &mut BytesMut, params: &[(&str, &str)]) {
    put_packet(out, |b| {
        b.put_i32(PROTOCOL_3_0);
        for (k, v) in params {
            put_cstr(b, k);
            put_cstr(b, v);
        }
        b.put_u8(0);
    });
}

pub fn encode_ssl_request(out: &mut BytesMut) {
    put_packet(out, |b| b.put_i32(SSL_REQUEST));
}

pub fn encode_cancel(out: &mut BytesMut, pid: i32, secret: i32) {
    put_packet(out, |b| {
        b.put_i32(CANCEL_REQUEST);
        b.put_i32(pid);
        b.put_i32(secret);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn startup_round_trip() {
        let mut b = BytesMut::new();
        encode_startup(&mut b, &[("user", "u"), ("database", "d")]);
        let len = u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize;
        assert_eq!(len, b.len());
        match parse_opening(&b[4..]).unwrap() {
            Opening::Startup(s) => {
                assert_eq!(s.minor, 0);
                assert_eq!(s.get("database"), Some("d"));
                assert_eq!(s.get("nope"), None);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn special_requests() {
        let mut b = BytesMut::new();
        encode_ssl_request(&mut b);
        assert_eq!(&b[..], &[0, 0, 0, 8, 4, 210, 22, 47]);
        assert_eq!(parse_opening(&b[4..]).unwrap(), Opening::SslRequest);
        b.clear();
        encode_cancel(&mut b, 5, 6);
        assert_eq!(
            parse_opening(&b[4..]).unwrap(),
            Opening::Cancel { pid: 5, secret: 6 }
        );
        assert_eq!(
            parse_opening(&GSSENC_REQUEST.to_be_bytes()).unwrap(),
            Opening::GssEncRequest
        );
    }

    #[test]
    fn rejects_garbage() {
        assert!(parse_opening(&[0, 2, 0, 0]).is_err());
        assert!(parse_opening(&[0, 3, 0, 0, b'u', 0]).is_err());
        assert!(parse_opening(&[0, 3, 0, 0, b'u', 0, b'v']).is_err());
        // 3.2 with a protocol option is decoded; the caller negotiates it down.
        let mut p = vec![0, 3, 0, 2];
        p.extend(b"_pq_.foo\0bar\0user\0u\0\0");
        match parse_opening(&p).unwrap() {
            Opening::Startup(s) => {
                assert_eq!(s.minor, 2);
                assert_eq!(s.protocol_options(), vec!["_pq_.foo"]);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}
