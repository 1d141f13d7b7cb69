//! One direction of the relay: read bytes, find message boundaries, forward untouched.
//!
//! Only messages a [`Handler`] asks for are held until complete and shown to it; every other message
//! streams through as it arrives, whatever its size, so a 50 MB DataRow costs no more memory than the
//! read buffer. Forwarded bytes are written straight from the read buffer: no copy, no allocation.

use bytes::BytesMut;
use std::{
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    task::Poll,
};

use tokio::{
    io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf},
    sync::Notify,
};

use super::RelayError;

/// PostgreSQL's own ceiling for a message length (MaxAllocSize - 1).
pub const MAX_PROTOCOL_MESSAGE: usize = 0x3fff_ffff;
const INITIAL_BUFFER: usize = 4 * 1024;
const MAX_READ_CHUNK: usize = 256 * 1024;
/// Gathered output is written once it reaches this size (and at the end of each read's messages).
const OUT_FLUSH: usize = 64 * 1024;
/// What the read returns when the pump was woken instead of data arriving (never a read's length).
const WOKEN: usize = usize::MAX;

/// Something a handler waits for before it can decide on a message (a catalog lookup, a person's
/// approval). It must not borrow the message: the pump keeps the message in its buffer meanwhile.
pub type Wait = Pin<Box<dyn Future<Output = ()> + Send>>;

/// What a handler decided about a complete message.
pub enum Action {
    /// Forward the original bytes.
    Forward,
    /// Do not forward it.
    Drop,
    /// Forward the bytes the handler wrote into the scratch buffer instead (complete messages).
    Replace,
    /// Cannot decide yet: the pump forwards what came before the message, writes the bytes the handler
    /// put into the scratch buffer (e.g. a notice for the client), awaits the future, and then shows
    /// the same message to [`Handler::frame`] again. Nothing after the message is read meanwhile.
    Wait(Wait),
}

impl std::fmt::Debug for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Forward => "Forward",
            Self::Drop => "Drop",
            Self::Replace => "Replace",
            Self::Wait(_) => "Wait",
        })
    }
}

/// Looks at the messages of one direction.
pub trait Handler {
    /// Whether messages with this tag must be held until complete and shown to [`Handler::frame`].
    fn inspects(&mut self, tag: u8) -> bool;
    /// The largest message this handler will hold in memory.
    fn max_inspected(&self) -> usize;
    /// A complete message (body without tag and length). Replacement bytes go into `scratch`.
    fn frame(&mut self, tag: u8, body: &[u8], scratch: &mut BytesMut) -> Result<Action, RelayError>;
    /// The stream offset (bytes read before it) of the message about to be shown to
    /// [`Handler::frame`].
    fn position(&mut self, _offset: u64) {}
    /// Called when the pump has written everything it read and is about to wait for more.
    fn idle(&mut self, _scratch: &mut BytesMut) {}
    /// Whether the pump should stop after the message just handled (e.g. the client sent Terminate).
    fn finished(&self) -> bool {
        false
    }
}

/// Why a pump stopped without an error.
#[derive(Debug, PartialEq, Eq)]
pub enum Stop {
    /// The reading side closed its end.
    Eof,
    /// The handler asked to stop after forwarding (e.g. Terminate).
    Done,
    /// Shutdown was requested and the pump sat between messages.
    Shutdown,
}

/// One direction's buffer and framing state.
///
/// The buffer is a plain, always-initialized byte vector with the unread bytes at `head..tail`: reads
/// go straight into its free tail (no zeroing, no unsafe), and forwarded bytes are written straight
/// from it. It starts small, grows while reads fill it (bulk results), and is compacted in place.
pub struct Pump {
    buf: Vec<u8>,
    head: usize,
    tail: usize,
    scratch: BytesMut,
    /// Output gathered when messages are replaced or dropped, so a run of rewritten rows costs one
    /// write, not one per row. Empty whenever nothing is rewritten (forwarded bytes go straight from
    /// the read buffer).
    out: BytesMut,
    /// Bytes of a streamed message still to forward.
    streaming: usize,
    /// When set, the pump stops at the next message boundary instead of reading on.
    shutdown: Option<Arc<AtomicBool>>,
    /// When notified, the pump calls [`Handler::idle`] at the next message boundary even though
    /// nothing arrived (the handler has something of its own to write).
    wake: Option<Arc<Notify>>,
    /// Bytes consumed before `head`.
    consumed: u64,
}

impl Default for Pump {
    fn default() -> Self {
        Self::with_buffer(&[])
    }
}

impl Pump {
    /// A pump whose buffer already holds bytes read during startup.
    pub fn with_buffer(already_read: &[u8]) -> Self {
        Self {
            buf: already_read.to_vec(),
            head: 0,
            tail: already_read.len(),
            scratch: BytesMut::new(),
            out: BytesMut::new(),
            streaming: 0,
            shutdown: None,
            wake: None,
            consumed: 0,
        }
    }

    /// Stop at a message boundary once `flag` is set (checked whenever the pump would read).
    pub fn stop_on(mut self, flag: Arc<AtomicBool>) -> Self {
        self.shutdown = Some(flag);
        self
    }

    /// Call [`Handler::idle`] at the next message boundary whenever `wake` is notified.
    pub fn wake_on(mut self, wake: Arc<Notify>) -> Self {
        self.wake = Some(wake);
        self
    }

    /// Whether the pump sits between messages (nothing half-forwarded).
    pub fn at_boundary(&self) -> bool {
        self.streaming == 0
    }

    /// Makes the buffer at least `size` bytes long with the unread bytes moved to its front.
    fn make_room(&mut self, size: usize) {
        let unread = self.tail - self.head;
        if self.head > 0 {
            self.buf.copy_within(self.head..self.tail, 0);
            self.head = 0;
            self.tail = unread;
        }
        if self.buf.len() < size {
            self.buf.resize(size, 0);
        }
    }

    /// Runs until EOF, a handler stop, or an error.
    pub async fn run<R, W, H>(&mut self, rd: &mut R, wr: &mut W, h: &mut H) -> Result<Stop, RelayError>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
        H: Handler,
    {
        let mut chunk = INITIAL_BUFFER;
        loop {
            let mut need = 0;
            if self.tail > self.head {
                need = self.process(wr, h).await?;
                if h.finished() {
                    wr.flush().await.map_err(RelayError::Write)?;
                    return Ok(Stop::Done);
                }
            }
            if self.tail == self.head {
                self.head = 0;
                self.tail = 0;
                // A large inspected message grew the buffer; give the memory back once it is forwarded.
                if self.buf.len() > 2 * MAX_READ_CHUNK {
                    self.buf.truncate(MAX_READ_CHUNK);
                    self.buf.shrink_to_fit();
                }
            }
            if self.streaming == 0 {
                self.scratch.clear();
                h.idle(&mut self.scratch);
                if !self.scratch.is_empty() {
                    wr.write_all(&self.scratch).await.map_err(RelayError::Write)?;
                    wr.flush().await.map_err(RelayError::Write)?;
                }
            }
            // Room to read: at least half a chunk, and all a pending inspected message still lacks.
            let unread = self.tail - self.head;
            let missing = need.saturating_sub(unread);
            if self.buf.len() - self.tail < missing.max(chunk / 2) {
                self.make_room(unread + missing.max(chunk));
            }
            let at_boundary = self.streaming == 0;
            let shutdown = self.shutdown.as_deref();
            let free = &mut self.buf[self.tail..];
            let mut woken = std::pin::pin!(self.wake.as_deref().map(Notify::notified));
            let read = std::future::poll_fn(|cx| {
                if at_boundary && shutdown.is_some_and(|f| f.load(Ordering::Acquire)) {
                    return Poll::Ready(Ok(None));
                }
                if let Some(w) = woken.as_mut().as_pin_mut()
                    && w.poll(cx).is_ready()
                {
                    return Poll::Ready(Ok(Some(WOKEN)));
                }
                let mut rb = ReadBuf::new(free);
                match Pin::new(&mut *rd).poll_read(cx, &mut rb) {
                    Poll::Ready(Ok(())) => Poll::Ready(Ok(Some(rb.filled().len()))),
                    Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                    Poll::Pending => Poll::Pending,
                }
            });
            let n = match read.await.map_err(RelayError::Read)? {
                Some(0) => return Ok(Stop::Eof),
                Some(WOKEN) => continue,
                Some(n) => n,
                None => return Ok(Stop::Shutdown),
            };
            self.tail += n;
            // Grow the read size while reads fill the buffer (bulk results), up to a bound.
            if n >= chunk / 2 && chunk < MAX_READ_CHUNK {
                chunk *= 2;
            }
        }
    }

    /// Forwards every complete or streamable message in the buffer. Returns the buffer size needed to
    /// hold the next inspected message whole (0 when no message is pending).
    async fn process<W, H>(&mut self, wr: &mut W, h: &mut H) -> Result<usize, RelayError>
    where
        W: AsyncWrite + Unpin,
        H: Handler,
    {
        let mut pos = 0;
        let mut flushed = 0;
        let mut need = 0;
        let mut refused = None;
        let data = &self.buf[self.head..self.tail];
        let len = data.len();
        while pos < len {
            if self.streaming > 0 {
                let n = self.streaming.min(len - pos);
                pos += n;
                self.streaming -= n;
                continue;
            }
            if len - pos < 5 {
                need = 5;
                break;
            }
            let tag = data[pos];
            let declared =
                u32::from_be_bytes([data[pos + 1], data[pos + 2], data[pos + 3], data[pos + 4]]) as usize;
            if !(4..=MAX_PROTOCOL_MESSAGE).contains(&declared) {
                refused = Some(RelayError::BadLength {
                    tag,
                    length: declared,
                });
                break;
            }
            let total = declared + 1;
            if !h.inspects(tag) {
                let n = total.min(len - pos);
                pos += n;
                self.streaming = total - n;
                continue;
            }
            if declared > h.max_inspected() {
                refused = Some(RelayError::TooLarge {
                    tag,
                    length: declared,
                    limit: h.max_inspected(),
                });
                break;
            }
            if len - pos < total {
                need = total;
                break;
            }
            self.scratch.clear();
            h.position(self.consumed + pos as u64);
            let action = match h.frame(tag, &data[pos + 5..pos + total], &mut self.scratch) {
                Ok(a) => a,
                Err(e) => {
                    refused = Some(e);
                    break;
                }
            };
            match action {
                Action::Forward => pos += total,
                Action::Drop | Action::Replace => {
                    // Gather: what came before, then the replacement; written together later.
                    self.out.extend_from_slice(&data[flushed..pos]);
                    if matches!(action, Action::Replace) {
                        self.out.extend_from_slice(&self.scratch);
                    }
                    pos += total;
                    flushed = pos;
                    if self.out.len() >= OUT_FLUSH {
                        wr.write_all(&self.out).await.map_err(RelayError::Write)?;
                        self.out.clear();
                    }
                }
                Action::Wait(until) => {
                    // Everything before the message reaches its destination before the wait, so the
                    // other side can answer it (a pipelined client may be waiting on those answers).
                    self.out.extend_from_slice(&data[flushed..pos]);
                    flushed = pos;
                    self.out.extend_from_slice(&self.scratch);
                    if !self.out.is_empty() {
                        wr.write_all(&self.out).await.map_err(RelayError::Write)?;
                        self.out.clear();
                    }
                    wr.flush().await.map_err(RelayError::Write)?;
                    until.await;
                    // The same message again, at the same position.
                    continue;
                }
            }
            if h.finished() {
                break;
            }
        }
        // What came before a refused message is forwarded first, as the server would have processed it.
        if !self.out.is_empty() {
            self.out.extend_from_slice(&data[flushed..pos]);
            wr.write_all(&self.out).await.map_err(RelayError::Write)?;
            self.out.clear();
            if self.out.capacity() > 4 * OUT_FLUSH {
                self.out = BytesMut::new();
            }
        } else if flushed < pos {
            wr.write_all(&data[flushed..pos])
                .await
                .map_err(RelayError::Write)?;
        }
        self.head += pos;
        self.consumed += pos as u64;
        match refused {
            Some(e) => Err(e),
            None => Ok(need),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Uppercases Query text, drops Flush, records what it saw.
    struct Upper {
        seen: Vec<u8>,
        max: usize,
    }

    impl Default for Upper {
        fn default() -> Self {
            Self {
                seen: Vec::new(),
                max: 64,
            }
        }
    }

    impl Handler for Upper {
        fn inspects(&mut self, tag: u8) -> bool {
            matches!(tag, b'Q' | b'H')
        }
        fn max_inspected(&self) -> usize {
            self.max
        }
        fn frame(&mut self, tag: u8, body: &[u8], scratch: &mut BytesMut) -> Result<Action, RelayError> {
            self.seen.push(tag);
            if tag == b'H' {
                return Ok(Action::Drop);
            }
            scratch.extend_from_slice(b"Q");
            scratch.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
            scratch.extend(body.iter().map(u8::to_ascii_uppercase));
            Ok(Action::Replace)
        }
    }

    fn msg(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut v = vec![tag];
        v.extend((body.len() as u32 + 4).to_be_bytes());
        v.extend(body);
        v
    }

    /// Feeds `input` in pieces of `split` bytes through a pump and returns what came out.
    async fn pump(input: &[u8], split: usize) -> (Result<Stop, RelayError>, Vec<u8>, Vec<u8>) {
        pump_with(input, split, Upper::default()).await
    }

    async fn pump_with(
        input: &[u8],
        split: usize,
        mut h: Upper,
    ) -> (Result<Stop, RelayError>, Vec<u8>, Vec<u8>) {
        let (mut client, mut server) = tokio::io::duplex(1 << 20);
        let input = input.to_vec();
        let writer = tokio::spawn(async move {
            for piece in input.chunks(split.max(1)) {
                client.write_all(piece).await.unwrap();
                client.flush().await.unwrap();
                tokio::task::yield_now().await;
            }
        });
        let mut out = Vec::new();
        let mut p = Pump::default();
        let r = p.run(&mut server, &mut out, &mut h).await;
        writer.await.unwrap();
        (r, out, h.seen)
    }

    #[tokio::test]
    async fn split_reads_give_the_same_result_at_every_split() {
        let mut input = msg(b'Q', b"select 1\0");
        input.extend(msg(b'd', &[7u8; 300]));
        input.extend(msg(b'H', b""));
        input.extend(msg(b'S', b""));
        input.extend(msg(b'Q', b"x\0"));
        let mut expected = msg(b'Q', b"SELECT 1\0");
        expected.extend(msg(b'd', &[7u8; 300]));
        expected.extend(msg(b'S', b""));
        expected.extend(msg(b'Q', b"X\0"));
        for split in [1, 2, 3, 4, 5, 6, 7, 13, 64, 1000] {
            let (r, out, seen) = pump(&input, split).await;
            assert_eq!(r.unwrap(), Stop::Eof, "split {split}");
            assert_eq!(out, expected, "split {split}");
            assert_eq!(seen, b"QHQ", "split {split}");
        }
    }

    #[tokio::test]
    async fn inspected_messages_larger_than_the_buffer_are_held_whole() {
        // Many messages, one far larger than the initial buffer, at splits that leave partial headers
        // and bodies at the end of the buffer, so it is compacted and grown.
        let mut input = Vec::new();
        let mut expected = Vec::new();
        for size in [10, 300_000, 3, 5_000, 70_000] {
            let body: Vec<u8> = std::iter::repeat_n(b'a', size).chain([0]).collect();
            input.extend(msg(b'Q', &body));
            expected.extend(msg(b'Q', &body.to_ascii_uppercase()));
            input.extend(msg(b'd', &[9u8; 777]));
            expected.extend(msg(b'd', &[9u8; 777]));
        }
        for split in [1000, 4093, 65_536, 1 << 20] {
            let h = Upper {
                seen: Vec::new(),
                max: 1 << 20,
            };
            let (r, out, seen) = pump_with(&input, split, h).await;
            assert_eq!(r.unwrap(), Stop::Eof, "split {split}");
            assert_eq!(seen, b"QQQQQ", "split {split}");
            assert!(out == expected, "split {split}: output differs");
        }
    }

    #[tokio::test]
    async fn large_uninspected_messages_stream_without_buffering() {
        let big = vec![1u8; 3 * 1024 * 1024];
        let input = msg(b'D', &big);
        let (r, out, _) = pump(&input, 64 * 1024).await;
        assert_eq!(r.unwrap(), Stop::Eof);
        assert_eq!(out, input);
    }

    #[tokio::test]
    async fn bad_lengths_end_the_connection() {
        let (r, _, _) = pump(&[b'Q', 0, 0, 0, 3], 5).await;
        assert!(matches!(r, Err(RelayError::BadLength { tag: b'Q', length: 3 })));
        let (r, _, _) = pump(&[b'd', 0x40, 0, 0, 0], 5).await;
        assert!(matches!(r, Err(RelayError::BadLength { .. })));
        // Inspected messages above the handler's limit are refused before they are buffered.
        let input = msg(b'Q', &[b'a'; 100]);
        let (r, _, _) = pump(&input, 7).await;
        assert!(matches!(
            r,
            Err(RelayError::TooLarge {
                tag: b'Q',
                length: 104,
                limit: 64
            })
        ));
    }
}
