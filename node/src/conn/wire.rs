//! Server frames on the wire (RFC 6455 section 5.2): the header of an unmasked frame,
//! and queued messages coalesced into one frame: a text frame of JSON objects joined by
//! `\n`, or a binary frame of length-delimited Protobuf replies back to back (each
//! queued Protobuf message carries its own length prefix, so joining is concatenating).
//!
//! Both writers of a connection (its writer task and the lane flusher, see
//! [`super::lanes`]) build frames here, so the two cannot drift apart.

use bytes::Bytes;
use fastwebsockets::OpCode;
use herald_shared::protocol::Encoding;
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

/// The frame type that carries `encoding`'s messages.
pub fn opcode(encoding: Encoding) -> OpCode {
    if encoding.is_binary() {
        OpCode::Binary
    } else {
        OpCode::Text
    }
}

/// Moves queued messages from the front of `items` into `buf` as one frame of
/// `encoding` (JSON: a text frame, messages joined by `\n`; Protobuf: a binary frame,
/// messages back to back), at most [`MAX_COALESCED_FRAME`] of payload unless a single
/// message is larger, and returns where the frame starts in `buf`. `buf` is cleared
/// first; nothing is taken from an empty queue (the frame is then empty).
pub fn coalesce(items: &mut VecDeque<Bytes>, buf: &mut Vec<u8>, encoding: Encoding) -> usize {
    let sep = usize::from(!encoding.is_binary());
    buf.clear();
    let want: usize = items
        .iter()
        .map(|m| m.len() + sep)
        .sum::<usize>()
        .min(MAX_COALESCED_FRAME);
    buf.reserve(MAX_SERVER_HEAD + want);
    buf.resize(MAX_SERVER_HEAD, 0);
    while let Some(next) = items.front() {
        let payload = buf.len() - MAX_SERVER_HEAD;
        if payload > 0 && payload + sep + next.len() > MAX_COALESCED_FRAME {
            break;
        }
        if payload > 0 && sep == 1 {
            buf.push(b'\n');
        }
        buf.extend_from_slice(next);
        items.pop_front();
    }
    frame_in_place(opcode(encoding), buf)
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
        let start = coalesce(&mut items, &mut buf, Encoding::Json);
        assert_eq!(&buf[start..start + 2], &[0x81, 10]);
        assert_eq!(&buf[start + 2..], b"{\"a\":1}\n{}");
        assert_eq!(items.len(), 1, "the big one waits for the next frame");
        let start = coalesce(&mut items, &mut buf, Encoding::Json);
        assert_eq!(buf.len() - start, 10 + big.len(), "64-bit length form");
        assert!(items.is_empty());
        assert_eq!(
            coalesce(&mut items, &mut buf, Encoding::Json),
            MAX_SERVER_HEAD - 2
        );
    }

    #[test]
    fn protobuf_messages_coalesce_back_to_back_in_a_binary_frame() {
        use herald_shared::protocol::{Publication, PushBody, RawJson};
        let p = Publication {
            data: RawJson::parse("1").unwrap(),
            info: None,
            offset: 7,
            tags: Default::default(),
            delta: false,
            delta_publish: false,
        };
        let push = Encoding::Protobuf.push("c", &PushBody::Pub(&p));
        let ping = Encoding::Protobuf.ping();
        let mut items: VecDeque<Bytes> = [push.clone(), ping.clone(), push.clone()].into();
        let mut buf = Vec::new();
        let start = coalesce(&mut items, &mut buf, Encoding::Protobuf);
        let len = 2 * push.len() + ping.len();
        assert_eq!(
            &buf[start..start + 2],
            &[0x82, len as u8],
            "one binary frame"
        );
        let body = &buf[start + 2..];
        assert_eq!(body, [&push[..], &ping[..], &push[..]].concat());
        // A length-delimited reader finds the three messages again.
        use herald_shared::protocol::protobuf::{decode_replies, pb};
        let found = decode_replies(body).unwrap();
        assert_eq!(found.len(), 3);
        assert_eq!(
            found[0]
                .push
                .as_ref()
                .unwrap()
                .r#pub
                .as_ref()
                .unwrap()
                .offset,
            7
        );
        assert_eq!(found[1], pb::Reply::default(), "the ping is an empty reply");
    }
}
