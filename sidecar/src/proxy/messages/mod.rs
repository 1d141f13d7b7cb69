//! PostgreSQL wire messages: one file per message family. The relay frames raw bytes and decodes only
//! the messages it must inspect; these decoders borrow from the frame and never copy the payload.
//!
//! Reference: <https://www.postgresql.org/docs/current/protocol-message-formats.html>.

pub mod backend;
pub mod error;
pub mod frontend;
pub mod startup;

use std::str;

/// A message body could not be decoded. The connection that sent it is ended with 08P01.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("malformed {message} message: {problem}")]
pub struct Malformed {
    /// Which message, e.g. "Bind".
    pub message: &'static str,
    /// What was wrong with it.
    pub problem: &'static str,
}

/// A cursor over a message body.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    message: &'static str,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8], message: &'static str) -> Self {
        Self { buf, message }
    }

    pub(crate) fn err(&self, problem: &'static str) -> Malformed {
        Malformed {
            message: self.message,
            problem,
        }
    }

    pub(crate) fn remaining(&self) -> &'a [u8] {
        self.buf
    }

    /// A NUL-terminated string, which must be UTF-8 (the sidecar only accepts UTF-8 client encodings
    /// for what it inspects; the server does the same check for statement text).
    pub(crate) fn cstr(&mut self) -> Result<&'a str, Malformed> {
        let raw = self.cstr_bytes()?;
        str::from_utf8(raw).map_err(|_| self.err("string is not valid UTF-8"))
    }

    pub(crate) fn cstr_bytes(&mut self) -> Result<&'a [u8], Malformed> {
        let end = self
            .buf
            .iter()
            .position(|&b| b == 0)
            .ok_or_else(|| self.err("missing string terminator"))?;
        let (s, rest) = self.buf.split_at(end);
        self.buf = &rest[1..];
        Ok(s)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, Malformed> {
        let (&b, rest) = self.buf.split_first().ok_or_else(|| self.err("truncated"))?;
        self.buf = rest;
        Ok(b)
    }

    pub(crate) fn i16(&mut self) -> Result<i16, Malformed> {
        let b = self.bytes(2)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }

    pub(crate) fn i32(&mut self) -> Result<i32, Malformed> {
        let b = self.bytes(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub(crate) fn u32(&mut self) -> Result<u32, Malformed> {
        Ok(self.i32()? as u32)
    }

    /// A non-negative 16-bit count.
    pub(crate) fn count(&mut self) -> Result<usize, Malformed> {
        usize::try_from(self.i16()?).map_err(|_| self.err("negative count"))
    }

    pub(crate) fn bytes(&mut self, n: usize) -> Result<&'a [u8], Malformed> {
        if self.buf.len() < n {
            return Err(self.err("truncated"));
        }
        let (b, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(b)
    }

    pub(crate) fn finish(&self) -> Result<(), Malformed> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(self.err("trailing bytes"))
        }
    }
}
