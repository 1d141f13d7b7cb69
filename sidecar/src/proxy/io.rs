//! Reading whole packets and messages during startup and authentication, where every message is small
//! and is read completely before it is acted on. Bytes read past a message stay in the caller's buffer.

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Reading a startup-phase message failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("connection closed")]
    Eof,
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("{what} declares length {length}, outside {min}..={limit}")]
    BadLength {
        what: &'static str,
        length: usize,
        min: usize,
        limit: usize,
    },
}

async fn fill<S: AsyncRead + Unpin>(s: &mut S, buf: &mut BytesMut, want: usize) -> Result<(), ReadError> {
    while buf.len() < want {
        buf.reserve(want - buf.len());
        if s.read_buf(buf).await? == 0 {
            return Err(ReadError::Eof);
        }
    }
    Ok(())
}

/// An untagged packet (startup, SSL, cancel): returns the bytes after the length word.
pub async fn read_packet<S: AsyncRead + Unpin>(
    s: &mut S,
    buf: &mut BytesMut,
    limit: usize,
) -> Result<BytesMut, ReadError> {
    fill(s, buf, 4).await?;
    let length = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    if !(8..=limit).contains(&length) {
        return Err(ReadError::BadLength {
            what: "startup packet",
            length,
            min: 8,
            limit,
        });
    }
    fill(s, buf, length).await?;
    let mut p = buf.split_to(length);
    p.advance(4);
    Ok(p)
}

/// A tagged message: returns the tag and the body.
pub async fn read_message<S: AsyncRead + Unpin>(
    s: &mut S,
    buf: &mut BytesMut,
    limit: usize,
) -> Result<(u8, BytesMut), ReadError> {
    fill(s, buf, 5).await?;
    let tag = buf[0];
    let length = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
    if !(4..=limit).contains(&length) {
        return Err(ReadError::BadLength {
            what: "message",
            length,
            min: 4,
            limit,
        });
    }
    fill(s, buf, length + 1).await?;
    let mut m = buf.split_to(length + 1);
    m.advance(5);
    Ok((tag, m))
}

/// Writes and flushes.
pub async fn send<S: AsyncWrite + Unpin>(s: &mut S, bytes: &[u8]) -> std::io::Result<()> {
    s.write_all(bytes).await?;
    s.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_across_split_writes_and_keeps_the_rest() {
        let (mut a, mut b) = tokio::io::duplex(64);
        tokio::spawn(async move {
            for piece in [&b"Z\0"[..], b"\0\0\x05", b"IQ\0\0\0\x05x"] {
                a.write_all(piece).await.unwrap();
            }
        });
        let mut buf = BytesMut::new();
        let (tag, body) = read_message(&mut b, &mut buf, 100).await.unwrap();
        assert_eq!((tag, &body[..]), (b'Z', &b"I"[..]));
        let (tag, body) = read_message(&mut b, &mut buf, 100).await.unwrap();
        assert_eq!((tag, &body[..]), (b'Q', &b"x"[..]));
        assert!(matches!(
            read_message(&mut b, &mut buf, 100).await,
            Err(ReadError::Eof)
        ));
    }

    #[tokio::test]
    async fn refuses_bad_lengths() {
        let mut buf = BytesMut::from(&b"\0\0\xff\xff"[..]);
        let mut empty = tokio::io::empty();
        assert!(matches!(
            read_packet(&mut empty, &mut buf, 10_000).await,
            Err(ReadError::BadLength { length: 65535, .. })
        ));
        let mut buf = BytesMut::from(&b"Q\0\0\0\x02"[..]);
        assert!(matches!(
            read_message(&mut empty, &mut buf, 100).await,
            Err(ReadError::BadLength { .. })
        ));
    }
}
