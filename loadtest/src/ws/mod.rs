//! A minimal WebSocket client, enough to drive a node at full speed.
//!
//! Why not a general library: a load generator spends most of its CPU in the client,
//! and this one keeps one reused read buffer per connection, hands out payloads as
//! slices of it (no copy, no allocation per message), and queues every outgoing frame
//! of one wake-up into one buffer written with one `write()`.
//!
//! # Layout
//! - this file: [`WsConn`] (handshake, buffers, events) and [`Target`].
//! - [`frame`]: frame headers and masking.

pub mod frame;

use frame::{parse_header, write_frame, FrameError, MaskGen};
use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// Largest message accepted from the server (the node's batched frames stay far below).
pub const MAX_MESSAGE: usize = 16 << 20;

/// Where to connect: resolved once, shared by every client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// The server's address.
    pub addr: SocketAddr,
    /// `Host` header value (`host:port` as written in the URL).
    pub host: String,
    /// Request path, e.g. `/connection/websocket`.
    pub path: String,
}

impl Target {
    /// Parses `ws://host:port/path` (path defaults to `/connection/websocket`) and
    /// resolves the host.
    pub async fn parse(url: &str) -> Result<Target, String> {
        let rest = url
            .strip_prefix("ws://")
            .ok_or_else(|| format!("{url:?}: only ws:// URLs are supported"))?;
        let (host, path) = match rest.find('/') {
            Some(i) if i + 1 < rest.len() => (&rest[..i], rest[i..].to_owned()),
            Some(i) => (&rest[..i], "/connection/websocket".to_owned()),
            None => (rest, "/connection/websocket".to_owned()),
        };
        let with_port = if host
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        {
            host.to_owned()
        } else {
            format!("{host}:80")
        };
        let addr = tokio::net::lookup_host(&with_port)
            .await
            .map_err(|e| format!("{url:?}: cannot resolve: {e}"))?
            .find(SocketAddr::is_ipv4)
            .ok_or_else(|| format!("{url:?}: no IPv4 address"))?;
        Ok(Target {
            addr,
            host: host.to_owned(),
            path,
        })
    }

    /// `http://host:port`, the node's server API on the same port.
    pub fn http_base(&self) -> String {
        format!("http://{}", self.host)
    }
}

/// Why a connection ended or could not be opened.
#[derive(Debug)]
pub enum WsError {
    /// Socket error (refused, reset...).
    Io(io::Error),
    /// The upgrade was answered with something other than 101.
    Handshake(String),
    /// A frame broke the protocol.
    Protocol(String),
    /// The peer closed the TCP connection.
    Eof,
}

impl fmt::Display for WsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WsError::Io(e) => write!(f, "io: {e}"),
            WsError::Handshake(s) => write!(f, "handshake: {s}"),
            WsError::Protocol(s) => write!(f, "protocol: {s}"),
            WsError::Eof => f.write_str("connection closed"),
        }
    }
}

impl From<io::Error> for WsError {
    fn from(e: io::Error) -> Self {
        WsError::Io(e)
    }
}

/// What [`WsConn::next_event`] found in the read buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A whole text (or binary) message at this range of the read buffer.
    Message(Range<usize>),
    /// A whole message reassembled from fragments (read it with [`WsConn::payload`]).
    Reassembled,
    /// A control frame was handled (a ping is answered by queueing a pong).
    Control,
    /// The server sent a close frame with this code (1005 when none).
    Close(u16),
}

/// One client WebSocket connection.
pub struct WsConn {
    /// The socket.
    tcp: TcpStream,
    /// Received bytes; the unparsed ones are `rbuf[rpos..]`.
    rbuf: Vec<u8>,
    /// Start of the unparsed bytes.
    rpos: usize,
    /// Fragments of a message in progress (rare: the node sends whole messages).
    frag: Vec<u8>,
    /// Frames queued for the next [`WsConn::flush`].
    wbuf: Vec<u8>,
    /// Masks for outgoing frames.
    masks: MaskGen,
}

impl WsConn {
    /// Opens TCP (from `source` when given, to spread over loopback addresses), and
    /// performs the upgrade. The caller bounds the time it may take.
    /// `query` (`name=value`) is added to the path: a router's stickiness key.
    pub async fn connect(
        target: &Target,
        source: Option<IpAddr>,
        seed: u32,
        query: Option<&str>,
    ) -> Result<WsConn, WsError> {
        let socket = TcpSocket::new_v4()?;
        if let Some(ip) = source {
            socket.bind(SocketAddr::new(ip, 0))?;
        }
        let mut tcp = socket.connect(target.addr).await?;
        tcp.set_nodelay(true)?;
        // The key is fixed: it only proves the server speaks WebSocket, which the 101
        // status already shows; nothing here is a browser that needs cache busting.
        let (sep, query) = match query {
            Some(q) if target.path.contains('?') => ("&", q),
            Some(q) => ("?", q),
            None => ("", ""),
        };
        let request = format!(
            "GET {}{sep}{query} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
             User-Agent: herald-loadtest\r\n\r\n",
            target.path, target.host
        );
        tcp.write_all(request.as_bytes()).await?;
        let mut rbuf = Vec::with_capacity(2048);
        let head_end = loop {
            if rbuf.len() > 16 * 1024 {
                return Err(WsError::Handshake("response headers too large".into()));
            }
            if tcp.read_buf(&mut rbuf).await? == 0 {
                return Err(WsError::Eof);
            }
            if let Some(i) = rbuf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
        };
        let status_line = rbuf[..head_end]
            .split(|&b| b == b'\r')
            .next()
            .unwrap_or_default();
        if !status_line.starts_with(b"HTTP/1.1 101") {
            return Err(WsError::Handshake(
                String::from_utf8_lossy(status_line).into_owned(),
            ));
        }
        Ok(WsConn {
            tcp,
            rbuf,
            rpos: head_end,
            frag: Vec::new(),
            wbuf: Vec::with_capacity(256),
            masks: MaskGen::new(seed),
        })
    }

    /// Reads more bytes (cancel-safe, for `select!`). Moves unparsed bytes to the front
    /// first, which invalidates earlier [`Event::Message`] ranges.
    pub async fn fill(&mut self) -> Result<usize, WsError> {
        if self.rpos > 0 {
            self.rbuf.copy_within(self.rpos.., 0);
            self.rbuf.truncate(self.rbuf.len() - self.rpos);
            self.rpos = 0;
        }
        if self.rbuf.capacity() - self.rbuf.len() < 1024 {
            self.rbuf.reserve(self.rbuf.capacity().max(2048));
        }
        match self.tcp.read_buf(&mut self.rbuf).await? {
            0 => Err(WsError::Eof),
            n => Ok(n),
        }
    }

    /// The next complete event in the buffer, `Ok(None)` when more bytes are needed.
    pub fn next_event(&mut self) -> Result<Option<Event>, WsError> {
        loop {
            let buf = &self.rbuf[self.rpos..];
            let h = match parse_header(buf, MAX_MESSAGE) {
                Ok(Some(h)) => h,
                Ok(None) => return Ok(None),
                Err(FrameError::Masked) => {
                    return Err(WsError::Protocol("masked server frame".into()))
                }
                Err(FrameError::TooLarge(n)) => {
                    return Err(WsError::Protocol(format!("frame of {n} bytes")))
                }
            };
            if buf.len() < h.payload_at + h.len {
                return Ok(None);
            }
            let start = self.rpos + h.payload_at;
            let end = start + h.len;
            self.rpos = end;
            match h.opcode {
                frame::OP_TEXT | frame::OP_BINARY if h.fin && self.frag.is_empty() => {
                    return Ok(Some(Event::Message(start..end)))
                }
                frame::OP_TEXT | frame::OP_BINARY | frame::OP_CONT => {
                    if self.frag.len() + h.len > MAX_MESSAGE {
                        return Err(WsError::Protocol("fragmented message too large".into()));
                    }
                    self.frag.extend_from_slice(&self.rbuf[start..end]);
                    if h.fin {
                        return Ok(Some(Event::Reassembled));
                    }
                }
                frame::OP_PING => {
                    let mask = self.masks.next_mask();
                    write_frame(&mut self.wbuf, frame::OP_PONG, &self.rbuf[start..end], mask);
                    return Ok(Some(Event::Control));
                }
                frame::OP_PONG => return Ok(Some(Event::Control)),
                frame::OP_CLOSE => {
                    let p = &self.rbuf[start..end];
                    let code = if p.len() >= 2 {
                        u16::from_be_bytes([p[0], p[1]])
                    } else {
                        1005
                    };
                    return Ok(Some(Event::Close(code)));
                }
                other => return Err(WsError::Protocol(format!("opcode {other}"))),
            }
        }
    }

    /// The payload of a message event.
    pub fn payload(&self, event: &Event) -> &[u8] {
        match event {
            Event::Message(r) => &self.rbuf[r.clone()],
            Event::Reassembled => &self.frag,
            _ => &[],
        }
    }

    /// Forgets a reassembled message once it has been handled.
    pub fn done_reassembled(&mut self) {
        self.frag.clear();
    }

    /// Queues a text frame.
    pub fn queue_text(&mut self, payload: &[u8]) {
        let mask = self.masks.next_mask();
        write_frame(&mut self.wbuf, frame::OP_TEXT, payload, mask);
    }

    /// Queues a close frame with `code`.
    pub fn queue_close(&mut self, code: u16) {
        let mask = self.masks.next_mask();
        write_frame(&mut self.wbuf, frame::OP_CLOSE, &code.to_be_bytes(), mask);
    }

    /// True when frames are waiting to be written.
    pub fn has_pending(&self) -> bool {
        !self.wbuf.is_empty()
    }

    /// Writes every queued frame with one `write_all`.
    pub async fn flush(&mut self) -> Result<(), WsError> {
        if !self.wbuf.is_empty() {
            self.tcp.write_all(&self.wbuf).await?;
            self.wbuf.clear();
        }
        Ok(())
    }
}
