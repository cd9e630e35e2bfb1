//! WebSocket framing (RFC 6455) for the client side: masked frames out, unmasked in.

/// Continuation of a fragmented message.
pub const OP_CONT: u8 = 0x0;
/// Text message (every message of the JSON protocol).
pub const OP_TEXT: u8 = 0x1;
/// Binary message.
pub const OP_BINARY: u8 = 0x2;
/// Close.
pub const OP_CLOSE: u8 = 0x8;
/// Ping (answered with a pong carrying the same payload).
pub const OP_PING: u8 = 0x9;
/// Pong.
pub const OP_PONG: u8 = 0xA;

/// A parsed frame header: where the payload sits in the buffer it was parsed from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Last frame of a message.
    pub fin: bool,
    /// Frame type.
    pub opcode: u8,
    /// Payload start, relative to the start of the frame.
    pub payload_at: usize,
    /// Payload length.
    pub len: usize,
}

/// Why a server frame is unacceptable.
#[derive(Debug, PartialEq, Eq)]
pub enum FrameError {
    /// Servers must not mask (RFC 6455 §5.1).
    Masked,
    /// Larger than the client accepts.
    TooLarge(u64),
}

/// Parses the header at the start of `buf`; `Ok(None)` when more bytes are needed.
pub fn parse_header(buf: &[u8], max_len: usize) -> Result<Option<Header>, FrameError> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let fin = buf[0] & 0x80 != 0;
    let opcode = buf[0] & 0x0F;
    if buf[1] & 0x80 != 0 {
        return Err(FrameError::Masked);
    }
    let (len, at) = match buf[1] & 0x7F {
        126 => {
            if buf.len() < 4 {
                return Ok(None);
            }
            (u64::from(u16::from_be_bytes([buf[2], buf[3]])), 4)
        }
        127 => {
            if buf.len() < 10 {
                return Ok(None);
            }
            let mut b = [0u8; 8];
            b.copy_from_slice(&buf[2..10]);
            (u64::from_be_bytes(b), 10)
        }
        n => (u64::from(n), 2),
    };
    if len > max_len as u64 {
        return Err(FrameError::TooLarge(len));
    }
    Ok(Some(Header {
        fin,
        opcode,
        payload_at: at,
        len: len as usize,
    }))
}

/// Appends one complete, masked frame to `out`.
///
/// The mask comes from the caller's cheap generator: clients must mask (RFC 6455 §5.3)
/// and servers reject unmasked frames, but nothing here needs cryptographic strength.
pub fn write_frame(out: &mut Vec<u8>, opcode: u8, payload: &[u8], mask: [u8; 4]) {
    out.reserve(payload.len() + 14);
    out.push(0x80 | opcode);
    let len = payload.len();
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if len <= usize::from(u16::MAX) {
        out.push(0x80 | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(&mask);
    let start = out.len();
    out.extend_from_slice(payload);
    for (i, b) in out[start..].iter_mut().enumerate() {
        *b ^= mask[i & 3];
    }
}

/// A xorshift generator for frame masks.
#[derive(Clone, Debug)]
pub struct MaskGen(u32);

impl MaskGen {
    /// Seeded per connection; a zero seed is replaced (xorshift would stay at zero).
    pub fn new(seed: u32) -> Self {
        MaskGen(if seed == 0 { 0x9E37_79B9 } else { seed })
    }

    /// The next mask.
    pub fn next_mask(&mut self) -> [u8; 4] {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.0 = x;
        x.to_ne_bytes()
    }
}
