//! WebSocket frames on the wire (RFC 6455 section 5): the reader of client frames.
//! Server frames are built in [`crate::conn::wire`].
//!
//! fastwebsockets still performs the upgrade handshake, but its frame reader is not
//! used. It keeps an 8 KiB read buffer for the whole life of every connection, and in
//! 0.10 that size is neither configurable nor released. With tens of thousands of idle
//! connections, that buffer alone was two thirds of the node's memory per connection.
//! Measured with `herald-loadtest idle --local 1 --no-nats --connections 15000`,
//! memory per connection fell from 10.9 to 4.1 KiB once this reader replaced it (and
//! the writer stopped keeping buffers between writes, see `writer`).
//!
//! So, unlike fastwebsockets (which keeps one reused read buffer per connection), this reader
//! holds a buffer only while a frame is arriving. It waits for the socket to become
//! readable with no buffer at all, reads what is there, and frees the buffer once
//! every complete frame in it has been handled. A busy connection pays one allocation
//! per burst of frames, which is small next to the `read()` that brings them.
//!
//! The reader checks everything a server must check of a client frame, before it reads
//! the payload: reserved bits (no extension is negotiated), known opcode, the mask,
//! unfragmented control frames of at most 125 bytes, a 64-bit length with its top bit
//! clear, and the size limit. Its errors map to the close codes of section 7.4.1.
//!
//! [`FrameReader::next`] is cancel-safe: bytes read stay in the reader, so racing it
//! in `select!` loses nothing (fastwebsockets' `read_frame` cannot promise that).

use fastwebsockets::OpCode;
use std::io;
use tokio::net::TcpStream;

/// Longest frame header a client can send: 2 bytes, 8 of length, 4 of mask.
const MAX_CLIENT_HEAD: usize = 14;

/// Largest payload of a control frame (ping, pong, close), section 5.5.
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// Bytes asked of the socket in one read when the frame under way needs fewer.
const READ_CHUNK: usize = 4096;

/// Why reading frames stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The client broke RFC 6455: close with 1002.
    #[error("protocol error: {0}")]
    Protocol(&'static str),
    /// A frame larger than the message size limit: close with 1009.
    #[error("frame larger than the message size limit")]
    TooBig,
    /// The client closed the TCP connection (possibly mid-frame).
    #[error("connection closed by the client")]
    Eof,
    /// The socket failed.
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// One client frame, unmasked.
#[derive(Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    /// Last frame of its message.
    pub fin: bool,
    /// Frame type.
    pub opcode: OpCode,
    /// Payload, already unmasked.
    pub payload: &'a [u8],
}

/// A parsed client frame header.
#[derive(Debug, PartialEq, Eq)]
struct Head {
    fin: bool,
    opcode: OpCode,
    mask: [u8; 4],
    /// Header length in bytes.
    len: usize,
    /// Payload length in bytes.
    payload: usize,
}

/// Parses the header at the start of `buf`: `Ok(None)` while it is incomplete.
fn parse_head(buf: &[u8], max_payload: usize) -> Result<Option<Head>, ReadError> {
    let [b0, b1, rest @ ..] = buf else {
        return Ok(None);
    };
    if b0 & 0x70 != 0 {
        return Err(ReadError::Protocol("reserved bits set"));
    }
    let opcode = match b0 & 0x0f {
        0x0 => OpCode::Continuation,
        0x1 => OpCode::Text,
        0x2 => OpCode::Binary,
        0x8 => OpCode::Close,
        0x9 => OpCode::Ping,
        0xa => OpCode::Pong,
        _ => return Err(ReadError::Protocol("unknown opcode")),
    };
    let fin = b0 & 0x80 != 0;
    if b1 & 0x80 == 0 {
        return Err(ReadError::Protocol("client frames must be masked"));
    }
    let control = matches!(opcode, OpCode::Close | OpCode::Ping | OpCode::Pong);
    if control && !fin {
        return Err(ReadError::Protocol("fragmented control frame"));
    }
    let (payload, rest) = match b1 & 0x7f {
        126 => match rest {
            [a, b, rest @ ..] => (u64::from(u16::from_be_bytes([*a, *b])), rest),
            _ => return Ok(None),
        },
        127 => match rest.split_first_chunk::<8>() {
            Some((len, rest)) => (u64::from_be_bytes(*len), rest),
            None => return Ok(None),
        },
        n => (u64::from(n), rest),
    };
    if payload >> 63 != 0 {
        return Err(ReadError::Protocol("payload length with its top bit set"));
    }
    if control && payload > MAX_CONTROL_PAYLOAD as u64 {
        return Err(ReadError::Protocol("control frame too large"));
    }
    if payload > max_payload as u64 {
        return Err(ReadError::TooBig);
    }
    let Some((mask, _)) = rest.split_first_chunk::<4>() else {
        return Ok(None);
    };
    Ok(Some(Head {
        fin,
        opcode,
        mask: *mask,
        len: buf.len() - rest.len() + 4,
        payload: payload as usize,
    }))
}

/// Reads client frames from a connection, holding memory only while one is arriving.
pub struct FrameReader {
    /// Bytes read and not yet consumed; no allocation between bursts.
    buf: Vec<u8>,
    /// Bytes at the front of `buf` that belong to the frame last returned.
    consumed: usize,
    /// Largest payload accepted in one frame (`HERALD_MAX_MESSAGE_SIZE`).
    max_payload: usize,
}

impl FrameReader {
    /// A reader that starts with `early` (bytes the client sent right behind its
    /// upgrade request, already read by the HTTP server).
    pub fn new(early: &[u8], max_payload: usize) -> Self {
        FrameReader {
            buf: early.to_vec(),
            consumed: 0,
            max_payload,
        }
    }

    /// Reads the next frame. Cancel-safe.
    pub async fn next(&mut self, rd: &TcpStream) -> Result<Frame<'_>, ReadError> {
        self.discard_consumed();
        loop {
            let want = match parse_head(&self.buf, self.max_payload)? {
                Some(head) if self.buf.len() >= head.len + head.payload => {
                    let payload = &mut self.buf[head.len..head.len + head.payload];
                    fastwebsockets::unmask(payload, head.mask);
                    self.consumed = head.len + head.payload;
                    return Ok(Frame {
                        fin: head.fin,
                        opcode: head.opcode,
                        payload,
                    });
                }
                Some(head) => head.len + head.payload,
                None => MAX_CLIENT_HEAD,
            };
            self.fill(rd, want).await?;
        }
    }

    /// Drops the frame last returned, and the buffer with it when nothing follows.
    fn discard_consumed(&mut self) {
        if self.consumed == self.buf.len() {
            // Idle from here on, maybe for hours: hold nothing.
            self.buf = Vec::new();
        } else {
            self.buf.drain(..self.consumed);
        }
        self.consumed = 0;
    }

    /// Waits for bytes and appends what the socket has, towards `want` bytes in all.
    async fn fill(&mut self, rd: &TcpStream, want: usize) -> Result<(), ReadError> {
        loop {
            // Allocate only once bytes are there: a quiet client costs no buffer.
            rd.readable().await?;
            let room = want.saturating_sub(self.buf.len()).max(READ_CHUNK);
            self.buf.reserve(room);
            match rd.try_read_buf(&mut self.buf) {
                Ok(0) => return Err(ReadError::Eof),
                Ok(_) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    // Readiness was stale (it is cleared only by this very error): wait
                    // again without holding the buffer just reserved.
                    if self.buf.is_empty() {
                        self.buf = Vec::new();
                    }
                    continue;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client frame as a browser would send it.
    fn client_frame(b0: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
        let mut out = vec![b0];
        match payload.len() {
            n if n < 126 => out.push(0x80 | n as u8),
            n if n <= 0xffff => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(0x80 | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        out
    }

    fn parse(buf: &[u8]) -> Result<Option<Head>, ReadError> {
        parse_head(buf, 1 << 20)
    }

    #[test]
    fn headers_of_every_length_form() {
        for len in [0usize, 1, 125, 126, 127, 65535, 65536, 70000] {
            let f = client_frame(0x81, &vec![b'a'; len], [1, 2, 3, 4]);
            let head = parse(&f).unwrap().expect("complete header");
            assert_eq!(head.payload, len);
            assert_eq!(head.len + len, f.len());
            assert!(head.fin);
            assert_eq!(head.opcode, OpCode::Text);
            assert_eq!(head.mask, [1, 2, 3, 4]);
            // Every strict prefix of the header is "not yet".
            for cut in 0..head.len {
                assert!(parse(&f[..cut]).unwrap().is_none(), "len {len} cut {cut}");
            }
        }
    }

    #[test]
    fn what_a_server_refuses() {
        let m = [9, 9, 9, 9];
        let protocol = |buf: &[u8]| matches!(parse(buf), Err(ReadError::Protocol(_)));
        assert!(protocol(&client_frame(0x81 | 0x40, b"x", m)), "RSV1");
        assert!(protocol(&client_frame(0x81 | 0x10, b"x", m)), "RSV3");
        assert!(protocol(&client_frame(0x83, b"x", m)), "reserved opcode");
        assert!(
            protocol(&client_frame(0x8b, b"x", m)),
            "reserved control opcode"
        );
        assert!(protocol(&[0x81, 0x01, b'x']), "unmasked");
        assert!(protocol(&client_frame(0x09, b"", m)), "fragmented ping");
        assert!(
            protocol(&client_frame(0x89, &[0; 126], m)),
            "ping of 126 bytes"
        );
        assert!(
            protocol(&client_frame(0x88, &[0; 126], m)),
            "close of 126 bytes"
        );
        let mut huge = vec![0x82, 0x80 | 127];
        huge.extend_from_slice(&u64::MAX.to_be_bytes());
        assert!(protocol(&huge), "64-bit length with the top bit set");
        assert!(matches!(
            parse_head(&client_frame(0x81, &[b'a'; 101], m), 100),
            Err(ReadError::TooBig)
        ));
        // The limit is checked from the header alone, before any payload arrives.
        let mut big = vec![0x81, 0x80 | 127];
        big.extend_from_slice(&(1u64 << 40).to_be_bytes());
        assert!(matches!(parse(&big), Err(ReadError::TooBig)));
        assert!(parse(&client_frame(0x89, &[0; 125], m)).unwrap().is_some());
        assert!(parse(&client_frame(0x01, b"part", m)).unwrap().is_some());
    }

    /// A real socket pair: fastwebsockets' client writes, our reader reads, in pieces.
    #[tokio::test]
    async fn reads_what_fastwebsockets_sends_in_any_split() {
        use fastwebsockets::{Frame as WsFrame, Payload, Role, WebSocket};
        use tokio::io::AsyncWriteExt;

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = tokio::spawn(async move {
            let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            let mut ws = WebSocket::after_handshake(stream, Role::Client);
            ws.set_writev(false);
            let big = vec![b'b'; 70_000];
            let frames = [
                WsFrame::text(Payload::Borrowed(b"{\"id\":1}")),
                WsFrame::new(false, OpCode::Text, None, Payload::Borrowed(b"he")),
                WsFrame::new(true, OpCode::Continuation, None, Payload::Borrowed(b"llo")),
                WsFrame::text(Payload::Borrowed(&big)),
                WsFrame::close(1000, b"bye"),
            ];
            for frame in frames {
                ws.write_frame(frame).await.unwrap();
            }
            // Then raw bytes of one frame, a byte at a time.
            let mut tcp = ws.into_inner();
            for b in client_frame(0x89, b"ping", [7, 7, 7, 7]) {
                tcp.write_all(&[b]).await.unwrap();
                tcp.flush().await.unwrap();
                tokio::time::sleep(std::time::Duration::from_millis(2)).await;
            }
            tcp
        });
        let (stream, _) = listener.accept().await.unwrap();
        let rd = stream;
        let mut reader = FrameReader::new(b"", 1 << 20);
        let mut got = Vec::new();
        for _ in 0..6 {
            let f = reader.next(&rd).await.unwrap();
            got.push((f.fin, f.opcode, f.payload.to_vec()));
        }
        assert_eq!(got[0], (true, OpCode::Text, b"{\"id\":1}".to_vec()));
        assert_eq!(got[1], (false, OpCode::Text, b"he".to_vec()));
        assert_eq!(got[2], (true, OpCode::Continuation, b"llo".to_vec()));
        assert_eq!(got[3], (true, OpCode::Text, vec![b'b'; 70_000]));
        assert_eq!(got[4], (true, OpCode::Close, b"\x03\xe8bye".to_vec()));
        assert_eq!(got[5], (true, OpCode::Ping, b"ping".to_vec()));
        reader.discard_consumed();
        assert_eq!(reader.buf.capacity(), 0, "nothing held between frames");
        drop(client.await.unwrap());
        assert!(matches!(reader.next(&rd).await, Err(ReadError::Eof)));
    }

    #[tokio::test]
    async fn early_bytes_come_first() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let _client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (stream, _) = listener.accept().await.unwrap();
        let rd = stream;
        let mut early = client_frame(0x81, b"one", [1, 2, 3, 4]);
        early.extend(client_frame(0x81, b"two", [5, 6, 7, 8]));
        let mut reader = FrameReader::new(&early, 100);
        assert_eq!(reader.next(&rd).await.unwrap().payload, b"one");
        assert_eq!(reader.next(&rd).await.unwrap().payload, b"two");
    }
}
