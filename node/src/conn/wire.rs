//! Server frames on the wire (RFC 6455 section 5.2): the header of an unmasked frame,
//! and queued messages coalesced into one text frame.
//!
//! Both writers of a connection (its writer task and the lane flusher, see
//! [`super::lanes`]) build frames here, so the two cannot drift apart.

use bytes::Bytes;
use fastwebsockets::OpCode;
use std::collections::VecDeque;

/// Longest frame header the server writes: 2 bytes and 8 of length, no mask.
pub const MAX_SERVER_HEAD: usize = 10;

/// Largest frame built from queued messages; more goes in the next frame.
pub const MAX_COALESCED_FRAME: usize = 256 * 1024;

/// Writes the header of an unmasked, final server frame carrying `len` bytes into the
/// end of `out`, and returns where it starts: `out[start..]` is the header, ready to
/// precede the payload.
pub fn server_head(opcode: OpCode, len: usize, out: &mut [u8; MAX_SERVER_HEAD]) -> usize {
    let b0 = 0x80 | opcode as u8;
    if len < 126 {
        out[8] = b0;
        out[9] = len as u8;
        8
    } else if len <= usize::from(u16::MAX) {
        out[6] = b0;
        out[7] = 126;
        out[8..].copy_from_slice(&(len as u16).to_be_bytes());
        6
    } else {
        out[0] = b0;
        out[1] = 127;
        out[2..].copy_from_slice(&(len as u64).to_be_bytes());
        0
    }
}

/// Puts the frame header in front of a payload that follows [`MAX_SERVER_HEAD`] bytes
/// of room at the start of `buf`; returns where the frame starts.
pub fn frame_in_place(opcode: OpCode, buf: &mut [u8]) -> usize {
    let mut head = [0u8; MAX_SERVER_HEAD];
    let start = server_head(opcode, buf.len() - MAX_SERVER_HEAD, &mut head);
    buf[start..MAX_SERVER_HEAD].copy_from_slice(&head[start..]);
    start
}

/// Moves queued messages from the front of `items` into `buf` as one text frame
/// (messages joined by `\n`, at most [`MAX_COALESCED_FRAME`] of payload unless a single
/// message is larger), and returns where the frame starts in `buf`. `buf` is cleared
/// first; nothing is taken from an empty queue (the frame is then empty).
pub fn coalesce(items: &mut VecDeque<Bytes>, buf: &mut Vec<u8>) -> usize {
    buf.clear();
    let want: usize = items
        .iter()
        .map(|m| m.len() + 1)
        .sum::<usize>()
        .min(MAX_COALESCED_FRAME);
    buf.reserve(MAX_SERVER_HEAD + want);
    buf.resize(MAX_SERVER_HEAD, 0);
    while let Some(next) = items.front() {
        let payload = buf.len() - MAX_SERVER_HEAD;
        if payload > 0 && payload + 1 + next.len() > MAX_COALESCED_FRAME {
            break;
        }
        if payload > 0 {
            buf.push(b'\n');
        }
        buf.extend_from_slice(next);
        items.pop_front();
    }
    frame_in_place(OpCode::Text, buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_heads_match_fastwebsockets() {
        for len in [0usize, 5, 125, 126, 65535, 65536, 1 << 20] {
            let payload = vec![0u8; len];
            for opcode in [OpCode::Text, OpCode::Close, OpCode::Pong] {
                let mut theirs = [0u8; 14];
                let n = fastwebsockets::Frame::new(
                    true,
                    opcode,
                    None,
                    fastwebsockets::Payload::Borrowed(&payload),
                )
                .fmt_head(&mut theirs);
                let mut ours = [0u8; MAX_SERVER_HEAD];
                let start = server_head(opcode, len, &mut ours);
                assert_eq!(&ours[start..], &theirs[..n], "len {len} {opcode:?}");
            }
        }
    }

    #[test]
    fn coalesces_up_to_the_frame_bound() {
        let big = Bytes::from(vec![b'x'; MAX_COALESCED_FRAME - 10]);
        let mut items: VecDeque<Bytes> = [
            Bytes::from_static(b"{\"a\":1}"),
            Bytes::from_static(b"{}"),
            big.clone(),
        ]
        .into_iter()
        .collect();
        let mut buf = Vec::new();
        let start = coalesce(&mut items, &mut buf);
        assert_eq!(&buf[start..start + 2], &[0x81, 10]);
        assert_eq!(&buf[start + 2..], b"{\"a\":1}\n{}");
        assert_eq!(items.len(), 1, "the big one waits for the next frame");
        let start = coalesce(&mut items, &mut buf);
        assert_eq!(buf.len() - start, 10 + big.len(), "64-bit length form");
        assert!(items.is_empty());
        assert_eq!(coalesce(&mut items, &mut buf), MAX_SERVER_HEAD - 2);
    }
}
